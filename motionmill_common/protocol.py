"""The JSON-lines protocol of `backend serve`: request parsing and validation, and the events' forms. Standard
library only: the service and its clients (the add-on's, the benchmarks') share it.

One request per line: {"id": "r1", "op": "generate", ...}. Every event the service sends is one line with the
request's "id" (null when a line had no usable id), an "event" name, and "final": true on the last event of a
request. Errors: {"event": "error", "id": ..., "code": "...", "message": "...", "final": true}, built by
`error_event` only. A line that parses to an object with a usable "id" is always answered with that id.
"""
import json
import math

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20          # longer lines are refused (and skipped to their end)
MAX_ID_CHARS = 128
MAX_PROMPTS = 256                 # per generate request
MAX_PROMPT_CHARS = 4000
MAX_VARIATIONS = 64
MAX_SEED = 2 ** 63 - 1
MAX_INT = 2 ** 63 - 1             # any integer field; larger ones would overflow torch and numpy
MAX_NUMBER = 1e9                  # any number field (seconds, temperature, ...); real values are far below

OPS = ("hello", "load", "unload", "generate", "cancel", "status", "shutdown")


def error_event(rid, code, message):
    """The one form of an error: the request's id, a code a program can test, one line for a person."""
    return {"id": rid, "event": "error", "code": code, "message": message, "final": True}


class RequestError(Exception):
    """A request that cannot be served; becomes one `error` event."""

    def __init__(self, code, message, request_id=None):
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT


def _is_number(v):
    # abs() first: math.isfinite raises OverflowError on an int too big for a float
    return (_is_int(v) or isinstance(v, float)) and abs(v) <= MAX_NUMBER and math.isfinite(v)


def is_text(v):
    """A str that can be written out: a lone surrogate ("\\ud800", legal in JSON) fails every encoder later."""
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_path(v):
    return is_text(v) and "\0" not in v


def _is_str_list(v):
    return isinstance(v, list) and all(is_text(s) for s in v)


# field -> (check, description); every op also takes "id" and "op"
_STR = (is_text, "a string (UTF-8 text)")
_PATH = (_is_path, "a path (UTF-8 text without NUL)")
_INT = (_is_int, "an integer of at most 63 bits")
_NUM = (_is_number, f"a finite number of magnitude at most {MAX_NUMBER:g}")
FIELDS = {
    "hello": {"token": _STR},
    "status": {},
    "shutdown": {},
    "unload": {},
    "load": {"model_dir": _PATH, "device": _STR, "dtype": _STR, "quant": _STR},
    "cancel": {"target": ((lambda v: is_text(v) or _is_int(v)), "a request id (string or integer)")},
    "generate": {"prompt": _STR, "prompts": (_is_str_list, "a list of strings"), "seconds": _NUM, "min_seconds": _NUM,
                 "max_tokens": _INT, "min_tokens": _INT, "seed": _INT, "variations": _INT, "sampling": _STR,
                 "temperature": _NUM, "top_k": _INT, "top_p": _NUM, "out": _PATH, "name": _STR,
                 "continue_from": _PATH, "context_seconds": _NUM,
                 "timeline": ((lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
                              'a list of {"seconds": S, "prompt": P} objects')},
}
REQUIRED = {"cancel": ("target",), "generate": ("out",)}


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in JSON")


def parse_line(raw):
    """bytes (one line, without the newline) -> validated request dict. Raises RequestError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError("bad_json", f"line is not UTF-8 ({err.reason} at byte {err.start})") from None
    if not text.strip():
        raise RequestError("bad_json", "empty line: send one JSON object per line")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise RequestError("bad_json", f"not valid JSON: {str(err)[:200]}") from None
    if not isinstance(obj, dict):
        raise RequestError("bad_request", f"a request must be a JSON object, got {type(obj).__name__}")
    rid = obj.get("id")
    if not ((isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS) or _is_int(rid)):
        raise RequestError("bad_request", f"'id' must be a non-empty string (up to {MAX_ID_CHARS} characters) or an integer")
    op = obj.get("op")
    if not isinstance(op, str) or op not in FIELDS:
        shown = op if isinstance(op, str) and len(op) < 40 else type(op).__name__
        raise RequestError("unknown_op", f"unknown op {shown!r}; expected one of {', '.join(OPS)}", rid)
    fields = FIELDS[op]
    unknown = sorted(k[:40] for k in obj if k not in fields and k not in ("id", "op"))
    if unknown:
        shown = ", ".join(ascii(k) for k in unknown[:5])
        raise RequestError("bad_request", f"{op}: unknown field(s) {shown}", rid)
    for key, (check, what) in fields.items():
        if key in obj and not check(obj[key]):
            raise RequestError("bad_request", f"{op}: '{key}' must be {what}, got {type(obj[key]).__name__}", rid)
    for key in REQUIRED.get(op, ()):
        if key not in obj:
            raise RequestError("bad_request", f"{op}: '{key}' is required", rid)
    if op == "generate":
        _check_generate(obj, rid)
    return obj


def _check_generate(obj, rid):
    has_one, has_many = "prompt" in obj, "prompts" in obj
    if "timeline" in obj:  # its segments hold the prompts; backend.long_motion.parse_timeline checks them
        if has_one or has_many:
            raise RequestError("bad_request", "generate: a 'timeline' holds the prompts: drop 'prompt'/'prompts'", rid)
        if not 1 <= len(obj["timeline"]) <= MAX_PROMPTS:
            raise RequestError("bad_request", f"generate: 1 to {MAX_PROMPTS} timeline segments, got {len(obj['timeline'])}", rid)
        has_many, obj = True, dict(obj, prompts=[x.get("prompt") if isinstance(x.get("prompt"), str) else ""
                                                 for x in obj["timeline"]])
    if has_one == has_many:
        raise RequestError("bad_request", "generate: give exactly one of 'prompt' (a string) or 'prompts' (a list)", rid)
    prompts = [obj["prompt"]] if has_one else obj["prompts"]
    if not 1 <= len(prompts) <= MAX_PROMPTS:
        raise RequestError("bad_request", f"generate: 1 to {MAX_PROMPTS} prompts per request, got {len(prompts)}", rid)
    for i, p in enumerate(prompts):
        if not p.strip():
            raise RequestError("bad_request", f"generate: prompt {i + 1} is empty: describe the motion", rid)
        if len(p) > MAX_PROMPT_CHARS:
            raise RequestError("bad_request", f"generate: prompt {i + 1} is longer than {MAX_PROMPT_CHARS} characters", rid)
    if not 1 <= obj.get("variations", 1) <= MAX_VARIATIONS:
        raise RequestError("bad_request", f"generate: 'variations' must be 1..{MAX_VARIATIONS}", rid)
    if not 0 <= obj.get("seed", 0) <= MAX_SEED:
        raise RequestError("bad_request", f"generate: 'seed' must be 0..{MAX_SEED}", rid)
    if obj.get("sampling", "greedy") not in ("greedy", "sample"):
        raise RequestError("bad_request", "generate: 'sampling' must be \"greedy\" or \"sample\"", rid)
    if not obj["out"].strip():
        raise RequestError("bad_request", "generate: 'out' must name an output folder", rid)
    name = obj.get("name")
    if name is not None and (not name or any(c in name for c in "/\\\0") or name in (".", "..") or len(name) > 100):
        raise RequestError("bad_request", "generate: 'name' must be a plain file-name prefix (no slashes)", rid)


def encode_event(event):
    """One line of JSON (bytes, with the newline); non-ASCII is escaped so the stream is plain ASCII."""
    return (json.dumps(event, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")

"""Fuzzing the request stream of one long-lived `backend serve`: every bad line gets exactly one error event
(with the line's id when it had a usable one), nothing else, and the service keeps serving."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.protocol import FIELDS, MAX_LINE_BYTES, OPS
from serve_helpers import start_client

FUZZ_LINES = {"n": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    c = start_client()
    c.call("hello", timeout=60)
    c.out = str(tmp_path_factory.mktemp("fuzz-out"))
    yield c
    c.close()


def _usable_id(rid):
    return (isinstance(rid, str) and 0 < len(rid) <= 128) or (isinstance(rid, int) and not isinstance(rid, bool)
                                                                and abs(rid) <= 2 ** 63 - 1)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=10)
WRONG = {"a string": json_values.filter(lambda v: not isinstance(v, str)),
         "an integer": json_values.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool))),
         "a finite number": json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float))),
         "a list of strings": json_values.filter(lambda v: not (isinstance(v, list) and all(isinstance(s, str) for s in v))),
         "a request id (string or integer)": json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, (str, int)))}


def _valid(op, rid, out):
    base = {"id": rid, "op": op}
    if op == "generate":
        base.update(prompt="a person walks", out=out, seconds=1)
    elif op == "cancel":
        base["target"] = "nothing-" + str(rid)
    elif op == "load":
        base["device"] = "cpu"
    return base


@st.composite
def bad_line(draw, out):
    """(line bytes, expected id of its error event)."""
    kind = draw(st.sampled_from(["bytes", "text", "json", "dict", "extra", "wrong_type", "drop", "truncate", "op", "bad_id",
                                 "bad_value"]))
    rid = f"fz-{draw(st.integers(0, 10 ** 9))}"
    op = draw(st.sampled_from([o for o in OPS if o != "shutdown"]))
    req = _valid(op, rid, out)
    if kind in ("bytes", "text", "json", "dict"):
        if kind == "bytes":
            raw = draw(st.binary(max_size=200))
        elif kind == "text":
            raw = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
        else:
            raw = json.dumps(draw(json_values if kind == "json" else st.dictionaries(st.text(max_size=8), json_values,
                                                                                    max_size=5))).encode()
        raw = raw.replace(b"\n", b" ")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("op") in OPS:
            raw, obj = b"{" + raw, None           # make sure it is not a valid request by chance
        return raw, (obj.get("id") if isinstance(obj, dict) and _usable_id(obj.get("id")) else None)
    if kind == "extra":
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS[op] and k not in ("id", "op")))
        req[key] = draw(json_values)
    elif kind == "wrong_type":
        if not FIELDS[op]:
            req["id"] = draw(WRONG["a string"].filter(lambda v: not _usable_id(v)))
            return json.dumps(req).encode(), None
        key, (_, what) = draw(st.sampled_from(sorted(FIELDS[op].items())))
        req[key] = draw(WRONG[what])
    elif kind == "drop":
        key = draw(st.sampled_from(["id", "op"] + {"generate": ["out"], "cancel": ["target"]}.get(op, [])))
        del req[key]
        if key == "id":
            return json.dumps(req).encode(), None
    elif kind == "truncate":
        text = json.dumps(req).encode()
        return text[: draw(st.integers(0, len(text) - 1))], None
    elif kind == "op":
        req["op"] = draw(st.text(max_size=10).filter(lambda o: o not in OPS) | json_values.filter(lambda o: o not in OPS))
    elif kind == "bad_id":
        req["id"] = draw(st.sampled_from(["", "x" * 129, 1.5, True, None, [], {}]))
        return json.dumps(req).encode(), None
    elif kind == "bad_value":
        op = "generate"
        req = _valid(op, rid, out)
        key, value = draw(st.sampled_from([("seconds", -1), ("seconds", 11), ("seconds", 0), ("variations", 0),
                                           ("variations", 1000), ("prompt", "   "), ("sampling", "beam"),
                                           ("temperature", -1.0), ("top_p", 0.0), ("top_k", -3), ("seed", -5),
                                           ("out", "/proc/no-such-place/out"), ("name", "../escape"),
                                           ("min_tokens", 99), ("max_tokens", 100000)]))
        req[key] = value
        if key == "min_tokens":
            req["max_tokens"] = 10
            del req["seconds"]
        if key == "max_tokens":
            del req["seconds"]
    return json.dumps(req).encode(), rid


def _exchange(server, lines):
    for raw, _ in lines:
        server.proc.stdin.write(raw + b"\n")
    server.proc.stdin.flush()
    sentinel = server.request("status")
    server.wait(sentinel, timeout=60)
    return server.poll()


def test_fuzzed_request_lines_get_one_error_each(server):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(bad_line(server.out), min_size=1, max_size=7))
    def check(lines):
        events = _exchange(server, lines)
        assert all(e["event"] == "error" and e["final"] is True and e["code"] and e["message"] for e in events), events
        assert len(events) == len(lines), (lines, events)
        assert sorted(map(str, (e["id"] for e in events))) == sorted(map(str, (rid for _, rid in lines)))
        FUZZ_LINES["n"] += len(lines)

    check()
    assert FUZZ_LINES["n"] >= 1000
    assert server.alive and server.call("hello", timeout=30)["event"] == "hello"
    assert server.wait(server.generate("a person walks", out=server.out, seconds=1), timeout=60)["event"] == "result"


def test_huge_lines_are_refused_and_skipped(server):
    huge_valid = json.dumps({"id": "big", "op": "status", "pad": "x" * (MAX_LINE_BYTES + 10)}).encode()
    lines = [(huge_valid, None), (b"y" * (3 * MAX_LINE_BYTES), None), (b"{" * (MAX_LINE_BYTES - 1), None),
             (b"[" * 100000, None)]
    events = _exchange(server, lines)
    assert [e["code"] for e in events] == ["line_too_long", "line_too_long", "bad_json", "bad_json"]
    assert all(e["id"] is None for e in events)
    assert server.call("status", timeout=30)["event"] == "status"

"""What `python -m backend`'s commands and the service share: the user's error type, the output-folder check and
the one plain constructor of sampling options. No argparse and no flag names here: the CLI names an option by its
flag (`--top-p`), the service by its JSON field (`top_p`), and messages that reach the Blender panel name neither.
"""
import os
import sys

COMPILE_CHOICES = ("auto", "on", "off")   # --compile / "compile": backend.decode_step.wants_compile decides


class UserError(Exception):
    """Bad input: printed as one line, no traceback."""


class OptionError(UserError):
    """One option is wrong. `field` is its name as the service spells it (top_p), or None where the message alone
    says which; the message is a sentence in plain words, for the CLI and the panel alike."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def check_writable(folder, warn=warn):
    """Create the output folder, prove it takes a file, and clear temp files that killed runs left in it."""
    from retarget.interchange import create_temp, remove_stale_temps
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = create_temp(folder, ".write-test")
        os.close(fd)
        os.remove(probe)
    except (OSError, ValueError) as err:   # ValueError: a NUL in the path
        raise UserError(f"cannot write to output folder {folder}: {getattr(err, 'strerror', None) or err}") from None
    removed = remove_stale_temps(folder)
    if removed:
        warn(f"removed {removed} temp file(s) that an interrupted run left in {folder}")


def read_prompt_lines(path):
    """(0-based line number, prompt) for each non-blank line not starting with #; one-line errors name the line.
    UTF-8, with or without a byte-order mark."""
    from retarget.continuation import read_text_lines
    from retarget.motion import MotionError
    try:
        lines = read_text_lines(path, "prompts file")
    except OSError as err:
        raise UserError(f"cannot read prompts file {path}: {err.strerror}") from None
    except MotionError as err:
        raise UserError(str(err)) from None
    return [(i, s.strip()) for i, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")]


def check_device(name):
    """Refuse a device name torch does not know, before anything loads."""
    from models.loader import resolve_device
    try:
        resolve_device(name)
    except RuntimeError:          # torch.device's own message lists every backend torch knows
        raise OptionError("device", f"device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None


def sampling_options(model_config, sampling=None, temperature=None, top_k=0, top_p=1.0, seconds=None,
                     min_seconds=None, max_tokens=None, min_tokens=0, warn=warn):
    """A validated backend.sampling.SamplingOptions from what a user asked for (None: not given).

    sampling: "greedy" or "sample"; by default sampling when temperature, top_k or top_p is given, else greedy.
    seconds: an exact length (END suppressed until then); min_seconds / min_tokens and max_tokens: a range instead;
    max_tokens None: auto, up to one pass (150 tokens = 10 s), END decides (the reference's demo capped at 50).
    """
    from .generation import MAX_SECONDS, seconds_to_tokens
    from .sampling import SamplingOptions
    wants_sampling = temperature is not None or bool(top_k) or top_p < 1
    mode = sampling or ("sample" if wants_sampling else "greedy")
    if mode not in ("greedy", "sample"):
        raise OptionError("sampling", f"sampling must be greedy or sample, got {mode!r}")
    if mode == "greedy":
        if wants_sampling:
            warn("greedy sampling ignores temperature, top-k and top-p")
        temperature = 0.0
    elif temperature is None:
        temperature = 1.0
    elif temperature <= 0:
        raise OptionError("temperature", "temperature must be above 0 when sampling (greedy sampling takes the arg-max)")

    def tokens_for(field, value):
        try:
            return seconds_to_tokens(value, model_config)
        except ValueError as err:
            raise OptionError(field, str(err)) from None

    if seconds is not None:
        max_tokens = min_tokens = tokens_for("seconds", seconds)
    if min_seconds is not None:
        min_tokens = tokens_for("min_seconds", min_seconds)
    cap = seconds_to_tokens(MAX_SECONDS, model_config)
    if max_tokens is None:
        max_tokens = cap
    if max_tokens > cap:
        raise OptionError("max_tokens", f"{max_tokens} tokens is more than one pass makes ({cap} tokens = "
                          f"{MAX_SECONDS:g} s)")
    opts = SamplingOptions(temperature, top_k, top_p, min_tokens, max_tokens)
    try:
        opts.validate()
    except ValueError as err:      # its messages name the option in words: "top-p must be in ..."
        raise OptionError(None, str(err)) from None
    return opts

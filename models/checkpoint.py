"""Checkpoint reading with clear, one-line errors. Everything loads with weights_only=True, memory-mapped.

The release checkpoints are training snapshots: next to the weights they pickle optimizer and scheduler state,
for the 7B a DeepSpeed ZeRO optimizer with DeepSpeed's own classes. Those classes are never imported: each one is
replaced, by name, with an inert stand-in (`InertObject`) through torch's `safe_globals`, so the pickle index reads
and the optimizer's tensors stay unread in the memory map. Globals from anywhere but the training libraries below
are refused before anything is unpickled.
"""
import _compat_pickle
import os
import pickle
import re
import threading
import zipfile

import torch

# Packages whose objects appear in training snapshots as optimizer, scheduler or mixed-precision state.
TRAINING_STATE_PACKAGES = ("deepspeed", "accelerate", "apex", "transformers", "torch.optim", "torch.amp",
                           "torch.cuda.amp", "torch.distributed", "numpy", "collections", "argparse", "enum")
# torch allow-lists globals process-wide; two loads at once (the service and a load request) must not interleave.
_SAFE_GLOBALS_LOCK = threading.Lock()
# What is read into memory rather than mapped: the pickle (data.pkl) of torch's zip format, a legacy-format file whole.
MAX_PICKLE_BYTES = 1 << 30
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what was expected."""


class InertObject:
    """Stands in for a pickled training-state object: keeps its arguments and state as data, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _inert_class(full_name):
    module, _, qualname = full_name.rpartition(".")
    return type(qualname, (InertObject,), {"__module__": module, "__qualname__": qualname})


def _is_training_state(full_name):
    return any(full_name == p or full_name.startswith(p + ".") for p in TRAINING_STATE_PACKAGES)


def _shown(full_name):
    """The global as a user would write it: os.system pickles as posix.system (nt.system on Windows), and pickle's
    protocol 2 writes Python 2 module names (subprocess.call as commands.call)."""
    module, _, name = full_name.rpartition(".")
    if module in ("posix", "nt"):
        return f"os.{name}"
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _first_line(err):
    text = _ANSI.sub("", str(err)).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]


def _zip_kind(path):
    """'torch' for torch.save's zip format, 'archive' for a plain zip (e.g. t2m_7B_all.zip holding the .pth),
    None when it is not a zip file at all (torch's legacy format)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return "torch" if any(n.endswith("data.pkl") for n in names) else "archive"


def _check_pickle(path, kind):
    """The bytes unpickled into memory, refused over MAX_PICKLE_BYTES and when they call bytearray, the one allowed
    global that allocates memory from a number alone (torch's unpickler reads globals only as `module\\nname\\n`)."""
    if kind == "torch":
        with zipfile.ZipFile(path) as z:
            info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
            size = info.file_size
            data = z.read(info) if size <= MAX_PICKLE_BYTES else b""
    else:
        size = os.path.getsize(path)
        data = open(path, "rb").read() if size <= MAX_PICKLE_BYTES else b""
    if size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{path}: {size} bytes to unpickle into memory, over the {MAX_PICKLE_BYTES >> 20} MiB "
                              "limit; re-save it with torch.save (its zip format is memory-mapped)")
    if b"\nbytearray\n" in data:
        raise CheckpointError(f"{path}: holds a pickled object of builtins.bytearray; refused (only tensors and inert "
                              "training state are read)")


def archive_members(path):
    """The files inside a plain zip archive."""
    with zipfile.ZipFile(path) as z:
        return [i.filename for i in z.infolist() if not i.is_dir()]


def read_checkpoint(path):
    """The whole pickled object of a torch checkpoint: tensors memory-mapped (nothing read until used), training
    classes as InertObject stand-ins. Raises CheckpointError with one line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), the download or copy was cut; fetch it again")
    try:
        kind = _zip_kind(path)
        if kind == "archive":
            members = ", ".join(archive_members(path)[:3]) or "nothing"
            raise CheckpointError(f"{path}: a zip archive (holding {members}), not a checkpoint; unpack it, or "
                                  "adopt it with `python3.11 install.py --from FOLDER`, which unpacks it")
        _check_pickle(path, kind)
        # The scan too runs under the lock: another load's allowance would hide globals from it.
        with _SAFE_GLOBALS_LOCK:
            if kind != "torch":
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy format: cannot be mapped
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            refused = [g for g in unsafe if not _is_training_state(g)]
            if refused:
                raise CheckpointError(f"{path}: holds a pickled object of {_shown(refused[0])}; refused (only tensors "
                                      "and inert training state are read)")
            with torch.serialization.safe_globals([(_inert_class(g), g) for g in unsafe]):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:  # a global the static scan could not see (built while unpickling)
        found = re.search(r"GLOBAL (\S+)", _ANSI.sub("", str(err)))
        what = f"a pickled object of {_shown(found.group(1))}" if found else f"more than tensors ({_first_line(err)})"
        raise CheckpointError(f"{path}: holds {what}; refused (only tensors and inert training state are read)") from None
    except Exception as err:  # a crafted pickle's allowed calls raise anything: TypeError, MemoryError, ...
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({_first_line(err)})") from None


def _tensor_dict(path, blob, key):
    if not isinstance(blob, dict) or key not in blob:
        found = sorted(map(str, blob))[:5] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path}: expected a dict with a {key!r} entry, found {found}")
    state = blob[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: {key!r} must map names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state_dict(path, key):
    """The tensor dict stored under `key` ("net" or "trans"), with DataParallel `module.` prefixes removed. The rest
    of the file (optimizer, scheduler) is dropped unread."""
    return _tensor_dict(os.fspath(path), read_checkpoint(path), key)


# What a release checkpoint holds, recognised by content: the key and the prefix of its tensor names.
CHECKPOINT_KINDS = {"tokenizer": ("net", "vqvae."), "t2m": ("trans", "transformer.")}


def identify(path):
    """(kind, tensor dict): kind 'tokenizer', 't2m', 'archive' (a plain zip: unpack it first) or None, by what the
    file holds; the tensor dict (memory-mapped) for a tokenizer or t2m checkpoint, else None. One read of the file."""
    path = os.fspath(path)
    try:
        if _zip_kind(path) == "archive":
            return "archive", None
        blob = read_checkpoint(path)
    except (CheckpointError, OSError):
        return None, None
    for kind, (key, prefix) in CHECKPOINT_KINDS.items():
        try:
            state = _tensor_dict(path, blob, key)
        except CheckpointError:
            continue
        if any(k.startswith(prefix) for k in state):
            return kind, state
    return None, None


def checkpoint_kind(path):
    """identify()'s kind alone."""
    return identify(path)[0]


def expect_shape(path, state, name, shape):
    """Check one tensor's shape; None in `shape` matches any size."""
    if name not in state:
        raise CheckpointError(f"{path}: missing tensor {name!r}")
    got = tuple(state[name].shape)
    if len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got)):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        raise CheckpointError(f"{path}: tensor {name!r} has shape {got}, expected {want}")
    return state[name]


def check_keys(path, state, expected):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{' …' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{' …' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{path}: does not match the expected architecture: " + "; ".join(parts))

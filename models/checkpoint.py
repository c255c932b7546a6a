"""Checkpoint reading with clear, one-line errors. Everything loads with weights_only=True."""
import os
import pickle
import zipfile

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what was expected."""


def load_state_dict(path, key):
    """The tensor dict stored under `key` ("net" or "trans"), with DataParallel `module.` prefixes removed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    try:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            blob = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused, it holds more than plain tensors ({first[:160]}); "
                              "only weights_only checkpoints are loaded") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(blob, dict) or key not in blob:
        found = sorted(blob)[:5] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path}: expected a dict with a {key!r} entry, found {found}")
    state = blob[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: {key!r} must map names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


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

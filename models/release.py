"""The authors' release files, wherever and however they were saved: found by what they hold, not by their names.

Copies circulate as `fsq_net_6000000.pth` / `motionmillion_7B_all.pth`, as `fsq.zip` / `t2m_7B_all.zip` (torch's
own zip format, or a plain zip archive holding the .pth), in the reference's layout (checkpoints/pretrained_models,
an HF-cache `models--google--flan-t5-xl/snapshots/<hash>/` folder, dataset/MotionMillion/mean_std/vector_272) or
flat. A checkpoint is a tokenizer when it holds `'net'` with `vqvae.*` tensors and a text-to-motion model when it
holds `'trans'` with `transformer.*` tensors; its size comes from its tensor shapes.
"""
import json
import os

import numpy as np

from .checkpoint import identify
from .model_config import PRESETS, RELEASE_FILES, ModelDirError, release_config

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".zip", ".bin", ".tar", ".ckpt")
# Folders of the reference's checkout that hold the training data or results, never release files: not walked.
SKIP_DIRS = {"motion_data", "texts", "split", ".git", "__pycache__", "results", "node_modules", "blobs"}
MAX_DEPTH = 6
MOTION_DIM = 272


def t2m_size(state):
    """'7B' / '3B' when a t2m checkpoint's ('trans' tensors) layer count and width are a release preset's, else None."""
    n_embd = state["transformer.wte.weight"].shape[1] if "transformer.wte.weight" in state else None
    n_layer = len({k.split(".")[2] for k in state if k.startswith("transformer.h.")})
    for size, preset in PRESETS.items():
        if (preset["n_layer"], preset["n_embd"]) == (n_layer, n_embd):
            return size
    return None


def _is_statistics(path):
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return arr.shape == (MOTION_DIM,)


def _is_t5_folder(folder, filenames):
    if "config.json" not in filenames or not any(f.endswith(".safetensors") for f in filenames):
        return False
    try:
        with open(os.path.join(folder, "config.json")) as f:
            return json.load(f).get("model_type") == "t5"
    except (OSError, ValueError, AttributeError):
        return False


def _walk(src):
    src = os.path.abspath(src)
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        depth = dirpath[len(src):].count(os.sep)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and depth < MAX_DEPTH)
        yield dirpath, sorted(filenames)


def find_release(src):
    """{role: path} of the release files under `src`: roles 'tokenizer', 't2m' (with 't2m_size'), 'text_encoder',
    'mean', 'std', and 'archives' (plain zip archives, to unpack and search again)."""
    found, archives, t2m = {}, [], []
    stats = {"mean": [], "std": []}
    release_names = {RELEASE_FILES["tokenizer"], *RELEASE_FILES["t2m"].values()}
    for dirpath, filenames in _walk(src):
        if _is_t5_folder(dirpath, filenames):
            found.setdefault("text_encoder", []).append(dirpath)
        for name in filenames:
            p = os.path.join(dirpath, name)
            stem = name.lower()
            if stem in ("mean.npy", "std.npy"):
                if _is_statistics(p):
                    stats[stem[:-4]].append(p)
                continue
            if not (name in release_names or stem.endswith(CHECKPOINT_SUFFIXES)) or not os.path.isfile(p):
                continue
            kind, state = identify(p)
            if kind == "archive":
                archives.append(p)
            elif kind == "tokenizer":
                found.setdefault("tokenizer", p)
            elif kind == "t2m":
                t2m.append((p, t2m_size(state)))
    out = {k: v for k, v in found.items() if k != "text_encoder"}
    if found.get("text_encoder"):  # flan-t5-xl by name first (the reference's own checkout may hold others)
        out["text_encoder"] = sorted(found["text_encoder"], key=lambda d: ("flan-t5-xl" not in d.lower(), len(d)))[0]
    for role, paths in stats.items():
        if paths:  # the reference keeps the 272-dim statistics under mean_std/vector_272
            out[role] = sorted(paths, key=lambda p: ("vector_272" not in p.replace("\\", "/"), len(p)))[0]
    if t2m:  # the larger release where both are present; a known size before an unknown one
        rank = {"7B": 0, "3B": 1, None: 2}
        out["t2m"], out["t2m_size"] = sorted(t2m, key=lambda c: (rank[c[1]], len(c[0])))[0]
    if archives:
        out["archives"] = archives
    return out


def release_folder_config(root):
    """The manifest of a folder without config.json: the release files found in it by content."""
    found = find_release(root)
    if "t2m" not in found:
        if found.get("archives"):
            raise ModelDirError(f"{root}: no config.json, and the checkpoints are inside zip archives "
                                f"({os.path.basename(found['archives'][0])}): adopt the folder with "
                                f"`python3.11 install.py --from {root}`, which unpacks them")
        raise ModelDirError(f"{root}: no config.json and no text-to-motion checkpoint (a file holding 'trans' "
                            f"tensors, released as {' or '.join(RELEASE_FILES['t2m'].values())})")
    size = found["t2m_size"]
    if size is None:
        sizes = ", ".join(f"{s}: {p['n_layer']} layers of width {p['n_embd']}" for s, p in PRESETS.items())
        raise ModelDirError(f"{found['t2m']}: its decoder matches neither release size ({sizes}); describe it in "
                              "a config.json (see README, 'The model directory')")
    rel = {role: os.path.relpath(found[role], root) for role in ("tokenizer", "t2m", "text_encoder", "mean", "std")
           if role in found}
    return release_config(root, size, rel)

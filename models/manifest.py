"""The model directory: `config.json` (format "motionmillion-modeldir/1"), its checkpoints and files.

A folder holding exactly the downloaded release (no config.json) loads too: `RELEASE_FILES` describes it. The
dataclasses live in models/model_config.py and are named here too, where callers have always found them.
"""
import json
import os

from .model_config import (  # noqa: F401  (re-exported)
    DEFAULT_LEVELS, MANIFEST_FORMAT, PRESETS, RELEASE_FILES, ModelConfig, ModelDirError, T2MConfig, TextEncoderConfig,
    TokenizerConfig, release_config)


def _pick(cls, data, where):
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelDirError(f"{where}: unknown keys {unknown}")
    return cls(**data)


def load_config(root):
    """Read `root/config.json`, or recognise a bare release folder."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ModelDirError(f"model directory not found: {root} (run `python3.11 install.py --weights 7b`, or choose another model directory)")
    cfg_path = os.path.join(root, "config.json")
    if not os.path.isfile(cfg_path):
        from .release import release_folder_config  # reads checkpoints (torch): only for folders without a manifest
        return release_folder_config(root)
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{cfg_path}: not valid JSON ({err})") from None
    if raw.get("format") != MANIFEST_FORMAT:
        raise ModelDirError(f"{cfg_path}: format is {raw.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    tok = dict(raw.get("tokenizer", {}))
    if "levels" in tok:
        tok["levels"] = tuple(int(v) for v in tok["levels"])
    norm = raw.get("normalization", {})
    return ModelConfig(
        root=root,
        tokenizer=_pick(TokenizerConfig, tok, f"{cfg_path} tokenizer"),
        t2m=_pick(T2MConfig, raw.get("t2m", {}), f"{cfg_path} t2m"),
        text_encoder=_pick(TextEncoderConfig, raw.get("text_encoder", {}), f"{cfg_path} text_encoder"),
        mean=norm.get("mean", "mean.npy"), std=norm.get("std", "std.npy"), fps=int(raw.get("fps", 30)),
    )


def write_config(cfg):
    path = cfg.path("config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg.to_json(), f, indent=1)
    os.replace(tmp, path)
    return path

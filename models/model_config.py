"""The model directory's manifest as data: the config dataclasses, the release presets and ModelDirError.

No I/O beyond paths: models/manifest.py reads and writes config.json, models/release.py recognises bare release
folders; both build on this module (and so neither imports the other back).
"""
import os
from dataclasses import asdict, dataclass, field

MANIFEST_FORMAT = "motionmillion-modeldir/1"
DEFAULT_LEVELS = (8, 8, 8, 5, 5, 5)


class ModelDirError(ValueError):
    """A model directory that is incomplete or malformed; one actionable line."""


@dataclass
class TokenizerConfig:
    file: str = "fsq_net_6000000.pth"
    levels: tuple = DEFAULT_LEVELS
    width: int = 512
    code_dim: int = 512
    output_emb_width: int = 512
    down_t: int = 1
    stride_t: int = 2
    depth: int = 3
    dilation_growth_rate: int = 3
    activation: str = "relu"
    norm: str = "LN"
    kernel_size: int = 3
    patch_size: int = 1
    patch_method: str = "haar"
    motion_dim: int = 272


@dataclass
class T2MConfig:
    file: str = "motionmillion_7B_all.pth"
    n_layer: int = 36
    n_head: int = 32
    n_embd: int = 4096
    block_size: int = 301
    vocab_size: int = 64002
    clip_dim: int = 2048
    rope_base: float = 10000
    norm_eps: float = 1e-5
    preset: str = None     # "7B" / "3B" where the folder holds a release size: named in shape errors


@dataclass
class TextEncoderConfig:
    kind: str = "t5-encoder"
    dir: str = "flan-t5-xl"
    max_tokens: int = 150


@dataclass
class ModelConfig:
    root: str
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    t2m: T2MConfig = field(default_factory=T2MConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    mean: str = "mean.npy"
    std: str = "std.npy"
    fps: int = 30

    def path(self, relative):
        return os.path.join(self.root, relative)

    @property
    def frames_per_token(self):
        return self.tokenizer.stride_t ** self.tokenizer.down_t * self.tokenizer.patch_size

    @property
    def codebook_size(self):
        n = 1
        for level in self.tokenizer.levels:
            n *= level
        return n

    @property
    def end_token(self):
        return self.codebook_size

    def to_json(self):
        return {
            "format": MANIFEST_FORMAT,
            "fps": self.fps,
            "normalization": {"mean": self.mean, "std": self.std},
            "text_encoder": asdict(self.text_encoder),
            "tokenizer": {**asdict(self.tokenizer), "levels": list(self.tokenizer.levels)},
            "t2m": asdict(self.t2m),
        }

    def files(self):
        """(role, relative path) of everything a complete directory must hold."""
        te = self.text_encoder.dir
        return [("tokenizer checkpoint", self.tokenizer.file), ("text-to-motion checkpoint", self.t2m.file),
                ("text encoder config", os.path.join(te, "config.json")),
                ("text encoder weights", os.path.join(te, "model.safetensors")),
                ("normalisation mean", self.mean), ("normalisation std", self.std)]

    def missing_files(self):
        out = []
        for role, rel in self.files():
            p = self.path(rel)
            if role == "text encoder weights":
                d = os.path.dirname(p)
                if os.path.isdir(d) and any(n.endswith((".safetensors", ".safetensors.index.json")) for n in os.listdir(d)):
                    continue
            if not os.path.isfile(p):
                out.append((role, rel))
        return out


# The real release, as downloaded: sizes are the published presets; t2m file per size.
PRESETS = {
    "3B": dict(n_layer=24, n_head=32, n_embd=3200, file="motionmillion_3B_all.pth"),
    "7B": dict(n_layer=36, n_head=32, n_embd=4096, file="motionmillion_7B_all.pth"),
}
RELEASE_FILES = {
    "tokenizer": "fsq_net_6000000.pth",
    "t2m": {size: p["file"] for size, p in PRESETS.items()},
    "text_encoder": "flan-t5-xl",
    "mean": "mean.npy",
    "std": "std.npy",
}


def release_config(root, size, files=None):
    """The manifest of a release folder of `size`; `files` {role: path relative to root} overrides the release
    names (tokenizer, t2m, text_encoder, mean, std) where a folder holds them under other names."""
    files = files or {}
    cfg = ModelConfig(root=os.fspath(root), t2m=T2MConfig(**PRESETS[size], preset=size))
    cfg.tokenizer.file = files.get("tokenizer", cfg.tokenizer.file)
    cfg.t2m.file = files.get("t2m", cfg.t2m.file)
    cfg.text_encoder.dir = files.get("text_encoder", cfg.text_encoder.dir)
    cfg.mean, cfg.std = files.get("mean", cfg.mean), files.get("std", cfg.std)
    return cfg

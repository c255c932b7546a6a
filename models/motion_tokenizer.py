"""MotionMillion's FSQ motion tokenizer: a 1-D conv encoder/decoder around FSQ.

Module indices mirror the reference (`vqvae.encoder.model.N`) so its `{"net": ...}` checkpoints load strictly.
Widths, depth, down-sampling and patch size are read from tensor shapes; FSQ levels from the manifest.
"""
import re

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import CheckpointError, check_keys, load_state_dict
from .fsq import FSQ, HaarPatcher, HaarUnpatcher


class ResBlock(nn.Module):
    """LN → ReLU → Conv(k3, dilated) → LN → ReLU → Conv(k1), plus the residual."""

    def __init__(self, width, dilation):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.conv1 = nn.Conv1d(width, width, 3, 1, padding=dilation, dilation=dilation)
        self.norm2 = nn.LayerNorm(width)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x):
        h = F.relu(self.norm1(x.transpose(1, 2)).transpose(1, 2))
        h = self.conv1(h)
        h = F.relu(self.norm2(h.transpose(1, 2)).transpose(1, 2))
        return x + self.conv2(h)


class Resnet1D(nn.Module):
    def __init__(self, width, depth, growth):
        super().__init__()
        self.model = nn.Sequential(*[ResBlock(width, growth ** d) for d in reversed(range(depth))])

    def forward(self, x):
        return self.model(x)


class Encoder(nn.Module):
    def __init__(self, motion_dim, width, out_width, down_t, stride_t, depth, growth, patch_size, patcher):
        super().__init__()
        layers = [HaarPatcher(patch_size)] if patcher else []
        layers += [nn.Conv1d(motion_dim * patch_size, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(nn.Conv1d(width, width, 2 * stride_t, stride_t, stride_t // 2),
                                        Resnet1D(width, depth, growth)))
        layers.append(nn.Conv1d(width, out_width, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class Decoder(nn.Module):
    def __init__(self, motion_dim, width, out_width, down_t, stride_t, depth, growth, patch_size, patcher):
        super().__init__()
        layers = [nn.Conv1d(out_width, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(Resnet1D(width, depth, growth), nn.Upsample(scale_factor=stride_t, mode="nearest"),
                                        nn.Conv1d(width, width, 3, 1, 1)))
        layers += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, motion_dim * patch_size, 3, 1, 1)]
        if patcher:
            layers.append(HaarUnpatcher(patch_size))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class MotionTokenizer(nn.Module):
    """Normalised 272-d motion (B, T, 272) <-> FSQ code indices (B, T / frames_per_token)."""

    def __init__(self, levels, motion_dim=272, width=512, code_dim=512, down_t=1, stride_t=2, depth=3,
                 growth=3, patch_size=1, patcher=True):
        super().__init__()
        self.encoder = Encoder(motion_dim, width, code_dim, down_t, stride_t, depth, growth, patch_size, patcher)
        self.decoder = Decoder(motion_dim, width, code_dim, down_t, stride_t, depth, growth, patch_size, patcher)
        self.quantizer = FSQ(levels, code_dim)
        self.frames_per_token = stride_t ** down_t * patch_size

    @torch.no_grad()
    def encode(self, motion):
        z = self.encoder(motion.transpose(1, 2))
        return self.quantizer.encode(z.transpose(1, 2))

    @torch.no_grad()
    def decode(self, indices):
        z = self.quantizer.decode(indices).transpose(1, 2)
        return self.decoder(z).transpose(1, 2)


def _count(state, pattern):
    return len({m.group(1) for k in state for m in [re.match(pattern, k)] if m})


def load_motion_tokenizer(path, cfg):
    """Build from a `{"net": ...}` checkpoint, reading sizes from its tensors; `cfg` is a TokenizerConfig."""
    raw = load_state_dict(path, "net")
    state = {k.removeprefix("vqvae."): v for k, v in raw.items()}
    try:
        patcher = "encoder.model.0.wavelets" in state
        first = 1 if patcher else 0
        conv_in = state[f"encoder.model.{first}.weight"]
        width, in_ch = conv_in.shape[0], conv_in.shape[1]
        motion_dim = cfg.motion_dim
        if in_ch % motion_dim:
            raise CheckpointError(f"{path}: first encoder conv takes {in_ch} channels, not a multiple of {motion_dim}")
        patch_size = in_ch // motion_dim
        down_t = _count(state, r"encoder\.model\.(\d+)\.0\.weight")
        code_dim = state["quantizer.project_in.weight"].shape[1]
        n_levels = state["quantizer.project_in.weight"].shape[0]
        depth = _count(state, r"encoder\.model\.\d+\.1\.model\.(\d+)\.conv1\.weight") or cfg.depth
        stride_t = state[f"encoder.model.{first + 2}.0.weight"].shape[2] // 2 if down_t else cfg.stride_t
    except KeyError as err:
        raise CheckpointError(f"{path}: not a MotionMillion FSQ tokenizer (missing {err.args[0]!r})") from None
    if n_levels != len(cfg.levels):
        raise CheckpointError(f"{path}: quantizer has {n_levels} channels but the manifest's levels are {list(cfg.levels)}")
    model = MotionTokenizer(cfg.levels, motion_dim, width, code_dim, down_t, stride_t, depth,
                            cfg.dilation_growth_rate, patch_size, patcher)
    expected = model.state_dict()
    check_keys(path, state, expected)
    for k, v in expected.items():
        if v.shape != state[k].shape:
            raise CheckpointError(f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    model.load_state_dict(state, strict=True)
    return model.eval()

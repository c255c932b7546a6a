"""Finite scalar quantisation (Mentzer et al. 2023) as MotionMillion uses it, and the Haar patcher.

FSQ: project_in (code_dim -> len(levels)), bound each channel with tanh (eps 1e-3, half-step offset for even
levels), round, then an index in the mixed-radix basis cumprod([1] + levels[:-1]). Quantisation runs in float32.
"""
import torch
from torch import nn
from torch.nn import functional as F


class FSQ(nn.Module):
    def __init__(self, levels, code_dim):
        super().__init__()
        levels = [int(v) for v in levels]
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), 0).to(torch.int32)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = int(torch.tensor(levels).prod())
        self.project_in = nn.Linear(code_dim, len(levels))
        self.project_out = nn.Linear(len(levels), code_dim)

    def _bound(self, z, eps=1e-3):
        half_l = (self.levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def encode(self, z):
        """(..., code_dim) -> code indices (...,) int64."""
        z = self.project_in(z).float()
        half_width = self.levels // 2
        codes = self._bound(z).round() / half_width
        return ((codes * half_width + half_width) * self.basis).sum(-1).to(torch.int64)

    def decode(self, indices):
        """Code indices (...,) -> (..., code_dim)."""
        level_idx = (indices[..., None] // self.basis) % self.levels
        half_width = self.levels // 2
        codes = (level_idx - half_width) / half_width
        return self.project_out(codes.to(self.project_out.weight.dtype))


_HAAR = 0.7071067811865476


class HaarPatcher(nn.Module):
    """Haar wavelet-packet patching along time: (B, C, L) -> (B, C·p, L/p), p a power of two.

    Each level splits every channel into low (x0+x1) and high (x0−x1) bands scaled by 1/√2 and halved, so
    the inverse below reconstructs exactly. Carries the reference's buffers so its checkpoints load strictly.
    """

    def __init__(self, patch_size=1):
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        self.levels = patch_size.bit_length() - 1
        self.register_buffer("wavelets", torch.tensor([_HAAR, _HAAR]))
        self.register_buffer("_arange", torch.arange(2))

    def _filters(self, groups, dtype):
        h = self.wavelets.to(dtype)
        low = h.flip(0).reshape(1, 1, 2).repeat(groups, 1, 1)
        high = (h * (-1) ** self._arange).reshape(1, 1, 2).repeat(groups, 1, 1)
        return low, high

    def forward(self, x):
        for _ in range(self.levels):
            low, high = self._filters(x.shape[1], x.dtype)
            padded = F.pad(x, (0, 1), mode="reflect")  # the reference pads (n-2, n-1) = (0, 1)
            x = torch.cat([F.conv1d(padded, low, groups=x.shape[1], stride=2),
                           F.conv1d(padded, high, groups=x.shape[1], stride=2)], 1) / 2
        return x


class HaarUnpatcher(HaarPatcher):
    """The exact inverse of HaarPatcher."""

    def forward(self, x):
        for _ in range(self.levels):
            groups = x.shape[1] // 2
            low, high = self._filters(groups, x.dtype)
            xl, xh = torch.chunk(x, 2, dim=1)
            x = (F.conv_transpose1d(xl, low, groups=groups, stride=2)
                 + F.conv_transpose1d(xh, high, groups=groups, stride=2)) * 2
        return x

"""Linear layers packed for oneDNN: how the decoder's plain (unquantised) weights run on the CPU.

A cached decoding step multiplies one row per prompt by every weight matrix, so it is a matrix-vector product
whose speed is how fast the weights stream from memory. nn.Linear hands that to MKL's gemv, which on the AMD EPYC
this was measured on reads the 64001-row head at about 16 GB/s; oneDNN's linear, on a weight reordered once into
its own blocked layout, reads it at about 46 GB/s and a cpu-mid step's layers at about 35 GB/s (docs/benchmarks.md).
The packed weight replaces the plain one, so nothing is held twice. Results differ from nn.Linear's only by float
rounding, as any two matrix-multiply kernels do.

Under torch.compile the call goes through `motionmill::packed_linear`, an opaque custom op: Inductor cannot lower
oneDNN's op on a pre-packed weight itself, so the compiled graph calls it as an external kernel.
"""
import os
import platform

import torch
from torch import nn

PACKED_DTYPES = (torch.float32, torch.bfloat16)


@torch.library.custom_op("motionmill::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@packed_linear.register_fake
def _packed_linear_shape(x, packed, bias):
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


class PackedLinear(nn.Module):
    """y = x Wᵀ + b on a oneDNN-packed W. Any number of leading dimensions, like nn.Linear."""

    def __init__(self, weight, bias=None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # The layout oneDNN picks for 16-row inputs: measured here faster than the 1-row layout even for one row,
        # and as fast for the 4-20 rows of batched steps and prefills (hints 2-64 all tie).
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 16)
        self.bias = None if bias is None else bias.detach()

    def forward(self, x):
        if torch.compiler.is_compiling():
            return packed_linear(x, self.packed, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")   # eager: no op overhead

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


PACKING_ENV = "MOTIONMILL_CPU_PACKING"  # "off": run the plain nn.Linear path even where packing is supported


def packing_supported(device, dtype):
    """x86-64 CPUs with torch's oneDNN; bf16 only where the CPU has the instructions oneDNN needs for it (AVX-512
    bf16 or AMX; an AVX2-only CPU runs bf16 on the plain path, as ARM does)."""
    if device.type != "cpu" or dtype not in PACKED_DTYPES or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    return dtype != torch.bfloat16 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def can_pack(device, dtype):
    """Whether the loader packs the decoder's weights: where packing is supported and not switched off with
    MOTIONMILL_CPU_PACKING=off (CI runs the decoding tests once that way, so both paths are tested on any CPU)."""
    return os.environ.get(PACKING_ENV, "").lower() != "off" and packing_supported(device, dtype)


def pack_linears(model, skip=()):
    """Replace every plain nn.Linear in `model` (quantised layers are subclasses and are left alone), except the
    children named in `skip`, by a PackedLinear. Returns the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and name not in skip:
                setattr(parent, name, PackedLinear(child.weight, child.bias))
    return model

"""The oneDNN-packed Linear the CPU decoder runs on: nn.Linear's results, any leading dimensions, only plain
Linears replaced."""
import pytest
import torch
from torch import nn

from models.cpu_linear import PackedLinear, pack_linears, packing_supported

pytestmark = pytest.mark.skipif(not packing_supported(torch.device("cpu"), torch.float32), reason="torch built without oneDNN")


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 96), (5, 96), (2, 7, 96), (1, 1, 96)])
def test_packed_linear_computes_what_nn_linear_does(bias, shape):
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(96, 333, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(333, 96, generator=g))
        if bias:
            lin.bias.copy_(torch.randn(333, generator=g))
    x = torch.randn(*shape, generator=g)
    packed = PackedLinear(lin.weight, lin.bias)
    y = packed(x)
    assert y.shape == lin(x).shape == (*shape[:-1], 333)
    torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-4)


def test_pack_linears_replaces_only_plain_linears_not_skipped_ones():
    from models.quantize import _bnb
    model = nn.Module()
    model.proj = nn.Linear(8, 8)
    model.block = nn.Sequential(nn.Linear(8, 16), nn.SiLU())
    model.quantised = _bnb().nn.Linear4bit(16, 8, bias=False)   # a subclass of nn.Linear: left to bitsandbytes
    model.head = nn.Linear(16, 4, bias=False)
    pack_linears(model, skip=("proj",))
    assert type(model.proj) is nn.Linear and type(model.quantised).__module__.startswith("bitsandbytes")
    assert isinstance(model.block[0], PackedLinear) and isinstance(model.head, PackedLinear)
    assert model.head(model.block(model.proj(torch.ones(3, 8)))).shape == (3, 4)

"""Weight precision for the decoder: NF4 and int8 through bitsandbytes, or plain bf16/fp16/fp32.

The model is built on the meta device and each weight is materialised straight into its final form, so a
7B checkpoint never sits in memory twice.
"""
import logging
import warnings

import torch
from torch import nn

QUANT_MODES = ("nf4", "int8", "none")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def _bnb():
    # bitsandbytes' CPU backend logs that it cannot fetch an optional kernel from a hub; we never fetch at run time.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes
    return bitsandbytes


def quantized_linear(weight, quant, compute_dtype, device, double_quant=False):
    """A bias-free bitsandbytes Linear holding `weight` (out, in), quantised on `device`."""
    bnb = _bnb()
    out_features, in_features = weight.shape
    if quant == "nf4":
        layer = bnb.nn.Linear4bit(in_features, out_features, bias=False, compute_dtype=compute_dtype,
                                  quant_type="nf4", compress_statistics=double_quant, device="meta")
        layer.weight = bnb.nn.Params4bit(weight.to(torch.bfloat16).contiguous(), requires_grad=False, quant_type="nf4",
                                         compress_statistics=double_quant, blocksize=64)
    elif quant == "int8":
        layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=False, has_fp16_weights=False, threshold=6.0,
                                    device="meta")
        layer.weight = bnb.nn.Int8Params(weight.to(torch.float16).contiguous(), requires_grad=False, has_fp16_weights=False)
    else:
        raise ValueError(f"unknown quantisation {quant!r}; choose one of {QUANT_MODES}")
    return layer.to(device)  # bitsandbytes quantises on this move


def materialize(model, state, device, dtype, quant="none", quantize_prefix="llama.layers.", double_quant=False):
    """Fill a meta-device `model` from `state`: Linear weights under `quantize_prefix` go through bitsandbytes."""
    state = dict(state)
    if quant != "none":
        for name, module in list(model.named_modules()):
            if name.startswith(quantize_prefix) and isinstance(module, nn.Linear):
                parent_name, _, child = name.rpartition(".")
                layer = quantized_linear(state.pop(name + ".weight"), quant, dtype, device, double_quant)
                setattr(model.get_submodule(parent_name), child, layer)
    params = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(params, strict=False, assign=True)
    # With quantised layers replaced, the only legitimate missing keys are theirs (already filled).
    missing = [k for k in missing if not (quant != "none" and k.startswith(quantize_prefix) and k.endswith(".weight"))]
    if missing or unexpected:
        raise RuntimeError(f"internal: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model

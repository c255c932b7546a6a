"""A real-format model directory with seeded random weights, for benchmarks and tests.

It is laid out exactly like a release directory (DESIGN.md contract 1): `tokenizer.pth` ({"net": ...} with the
reference's `vqvae.*` names), `t2m.pth` ({"trans": ...} with the reference's fused q/k/v names, bf16 or fp32),
`config.json`, and the text encoder and mean/std copied from a template directory (the tiny conformance model),
so it goes through the same loader as the real weights.
"""
import json
import math
import os
import shutil

import torch

from models.manifest import DEFAULT_LEVELS, ModelConfig, T2MConfig, TextEncoderConfig, TokenizerConfig, load_config

SIZES = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4),
    "cpu-mid": dict(n_layer=8, n_embd=512, n_head=8),
    "3B": dict(n_layer=24, n_embd=3200, n_head=32),
    "7B": dict(n_layer=36, n_embd=4096, n_head=32),
}


def llama_ffn(n_embd):
    """LLaMA's FFN width rule (2/3 of 4E, rounded up to 256): 3200 -> 8704, 4096 -> 11008."""
    return 256 * math.ceil(8 * n_embd / 3 / 256)


# google/flan-t5-xl's encoder (the release's text encoder, DESIGN.md): 24 layers, d_model 2048, gated-GELU FFN of 5120,
# 32 heads of 64, a 32,128-row vocabulary; about 1.2 B parameters.
FLAN_T5_XL = dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24,
                  vocab_size=32128, feed_forward_proj="gated-gelu")
TEXT_ENCODER_SHAPES = {"flan-t5-xl": FLAN_T5_XL, "tiny": {}}     # tiny: the conformance model's own encoder


def tiny_model_dir():
    """The tiny conformance model: $MOTIONMILL_SHARED/conformance/motionmillion-tiny/model (default ../shared)."""
    shared = os.environ.get("MOTIONMILL_SHARED") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
    return os.path.normpath(os.path.join(shared, "conformance", "motionmillion-tiny", "model"))


def build_random_text_encoder(path, shape="flan-t5-xl", device="cpu", dtype=torch.bfloat16, seed=0):
    """A T5 encoder folder at `path` with random weights in `shape` (TEXT_ENCODER_SHAPES), as the loader reads one:
    config.json, model.safetensors and the tokenizer files. The tokenizer is the conformance model's (its token
    count per prompt differs from flan-t5-xl's; the encoder's cost per position does not). Weights are drawn on
    `device`, so the 1.2 B-parameter XL takes seconds on a GPU."""
    from transformers import T5Config, T5EncoderModel
    from models.text_encoder import TOKENIZER_FILES
    template = os.path.join(tiny_model_dir(), "text_encoder")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(template):
        if name in TOKENIZER_FILES or name.startswith(("tokenizer", "special_tokens", "spiece")):
            shutil.copy(os.path.join(template, name), os.path.join(path, name))
    if shape == "tiny":
        shutil.copy(os.path.join(template, "model.safetensors"), os.path.join(path, "model.safetensors"))
        shutil.copy(os.path.join(template, "config.json"), os.path.join(path, "config.json"))
        return os.fspath(path)
    config = T5Config.from_pretrained(template)
    for key, value in TEXT_ENCODER_SHAPES[shape].items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    with torch.device(device):
        model = T5EncoderModel(config)
    model.to(dtype).save_pretrained(path)
    del model
    return os.fspath(path)


def _t2m_state(n_layer, n_embd, ffn, vocab, clip_dim, gen, dtype, distinct_layers=True):
    def w(*shape, scale=None):
        scale = scale if scale is not None else 1 / math.sqrt(shape[-1])
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    state = {"transformer.wte.weight": w(vocab, n_embd, scale=0.02 * math.sqrt(n_embd)),
             "transformer.ln_f.scale": torch.ones(n_embd, dtype=dtype),
             "lm_head.weight": w(vocab - 1, n_embd),
             "llama_proj.weight": w(n_embd, clip_dim),
             "llama_proj.bias": torch.zeros(n_embd, dtype=dtype)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        if i and not distinct_layers:   # every layer shares layer 0's tensors: torch.save writes them once
            state.update({p + k[len("transformer.h.0."):]: v for k, v in state.items() if k.startswith("transformer.h.0.")})
            continue
        state.update({p + "rms_1.scale": torch.ones(n_embd, dtype=dtype), p + "attn.c_attn.weight": w(3 * n_embd, n_embd),
                      p + "attn.c_proj.weight": w(n_embd, n_embd), p + "rms_2.scale": torch.ones(n_embd, dtype=dtype),
                      p + "mlp.c_fc1.weight": w(ffn, n_embd), p + "mlp.c_fc2.weight": w(ffn, n_embd),
                      p + "mlp.c_proj.weight": w(n_embd, ffn)})
    return state


def _tokenizer_state(levels, width, gen):
    from models.motion_tokenizer import MotionTokenizer
    torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
    net = MotionTokenizer(levels, 272, width, width, down_t=1, stride_t=2, depth=3, growth=3, patch_size=1)
    return {"vqvae." + k: v.detach().clone() for k, v in net.state_dict().items()}


def build_random_model_dir(path, n_layer, n_embd, n_head, ffn=None, vocab_size=64002, tokenizer_width=64,
                           template_dir=None, seed=0, dtype=torch.bfloat16, distinct_layers=True, text_encoder_dir=None):
    """Write a random-weight model directory at `path` and return it. The template supplies the text encoder
    (its width becomes the decoder's clip_dim) and mean/std; default: the tiny conformance model. text_encoder_dir:
    another T5 encoder folder to use instead of the template's (build_random_text_encoder's flan-t5-xl shape).
    distinct_layers=False: every layer holds the same random weights, so a 7B-shaped checkpoint is one layer's size
    on disk and in memory (the loader still places 36 layers, each quantised on its own)."""
    template_dir = template_dir or tiny_model_dir()
    template = load_config(template_dir)
    if n_embd % n_head:
        raise ValueError(f"width {n_embd} is not divisible by {n_head} heads")
    levels = tuple(template.tokenizer.levels) or DEFAULT_LEVELS
    codebook = math.prod(levels)
    if vocab_size != codebook + 2:
        raise ValueError(f"vocab_size must be the {codebook} codes + END + PAD = {codebook + 2}")
    os.makedirs(path, exist_ok=True)
    te_src = text_encoder_dir or template.path(template.text_encoder.dir)
    te_dst = os.path.join(path, "text_encoder")
    if os.path.abspath(te_src) != os.path.abspath(te_dst):      # one built in place (the 2.4 GB XL) stays put
        shutil.copytree(te_src, te_dst, dirs_exist_ok=True)
    shutil.copy(template.path(template.mean), os.path.join(path, "mean.npy"))
    shutil.copy(template.path(template.std), os.path.join(path, "std.npy"))
    with open(os.path.join(te_src, "config.json")) as f:
        clip_dim = int(json.load(f)["d_model"])

    gen = torch.Generator().manual_seed(seed)
    ffn = ffn or llama_ffn(n_embd)
    torch.save({"trans": _t2m_state(n_layer, n_embd, ffn, vocab_size, clip_dim, gen, dtype, distinct_layers)}, os.path.join(path, "t2m.pth"))
    torch.save({"net": _tokenizer_state(levels, tokenizer_width, gen)}, os.path.join(path, "tokenizer.pth"))
    cfg = ModelConfig(
        root=os.fspath(path),
        tokenizer=TokenizerConfig(file="tokenizer.pth", levels=levels, width=tokenizer_width, code_dim=tokenizer_width,
                                  output_emb_width=tokenizer_width),
        t2m=T2MConfig(file="t2m.pth", n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                      clip_dim=clip_dim),
        text_encoder=TextEncoderConfig(dir="text_encoder", max_tokens=template.text_encoder.max_tokens),
        fps=template.fps)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg.to_json(), f, indent=1)
    return os.fspath(path)


def build_preset(path, size="cpu-mid", **kwargs):
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    return build_random_model_dir(path, **SIZES[size], **kwargs)

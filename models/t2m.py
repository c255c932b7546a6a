"""MotionMillion's text-to-motion decoder as a standard transformers LlamaModel.

The reference ("lit_llama" LLaMAHF) is a Llama with fused q/k/v, interleaved-pair RoPE, a `llama_proj` from
the text encoder's width to E, and a head of vocab−1 rows (END can be predicted, PAD cannot). The converter
maps its `{"trans": ...}` state dict onto LlamaModel: it splits the fused projection, permutes q and k rows
per head (interleaved pairs -> transformers' rotate-half), and keeps the checkpoint's dtype.
"""
import os
from dataclasses import dataclass

from torch import nn
from transformers import LlamaConfig, LlamaModel

from .checkpoint import CheckpointError, check_keys, expect_shape, load_state_dict


def interleaved_to_half_rotation(w, n_head):
    """Rows of a q or k projection, from interleaved-pair RoPE order to rotate-half order, per head."""
    out_dim, in_dim = w.shape
    head_dim = out_dim // n_head
    return w.view(n_head, head_dim // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


@dataclass
class DecoderShape:
    n_layer: int
    n_head: int
    n_embd: int
    ffn: int
    vocab_size: int        # embedding rows: codebook + END + PAD
    clip_dim: int          # text encoder width
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    block_size: int = 301

    def llama_config(self):
        return LlamaConfig(
            vocab_size=self.vocab_size, hidden_size=self.n_embd, intermediate_size=self.ffn,
            num_hidden_layers=self.n_layer, num_attention_heads=self.n_head, num_key_value_heads=self.n_head,
            max_position_embeddings=max(self.block_size, 512), rms_norm_eps=self.norm_eps,
            rope_theta=self.rope_base, rope_parameters={"rope_type": "default", "rope_theta": self.rope_base},
            attention_bias=False, mlp_bias=False, tie_word_embeddings=False, hidden_act="silu",
        )


class MotionDecoder(nn.Module):
    """LlamaModel plus the text projection and the motion-token head."""

    def __init__(self, shape: DecoderShape, attn_implementation="sdpa"):
        super().__init__()
        self.shape = shape
        config = shape.llama_config()
        config._attn_implementation = attn_implementation
        self.llama = LlamaModel(config)
        self.llama_proj = nn.Linear(shape.clip_dim, shape.n_embd)
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size - 1, bias=False)

    @property
    def end_token(self):
        return self.shape.vocab_size - 2

    def embed_text(self, text_features):
        return self.llama_proj(text_features.to(self.llama_proj.weight.dtype))

    def embed_tokens(self, tokens):
        return self.llama.embed_tokens(tokens)

    def forward(self, inputs_embeds, attention_mask, position_ids, past_key_values=None):
        """Logits (float32) for every position, and the cache."""
        out = self.llama(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, use_cache=past_key_values is not None)
        return self.lm_head(out.last_hidden_state).float(), out.past_key_values


def read_decoder_shape(path, state, n_head, rope_base=10000.0, norm_eps=1e-5, block_size=301):
    """Sizes from tensor shapes; only the head count comes from the manifest (it is not in the shapes)."""
    wte = expect_shape(path, state, "transformer.wte.weight", (None, None))
    vocab, E = wte.shape
    n_layer = len({k.split(".")[2] for k in state if k.startswith("transformer.h.")})
    if n_layer == 0:
        raise CheckpointError(f"{path}: no transformer layers (transformer.h.*) found")
    ffn = expect_shape(path, state, "transformer.h.0.mlp.c_fc1.weight", (None, E)).shape[0]
    clip_dim = expect_shape(path, state, "llama_proj.weight", (E, None)).shape[1]
    if E % n_head:
        raise CheckpointError(f"{path}: embedding width {E} is not divisible by the manifest's {n_head} heads")
    return DecoderShape(n_layer, n_head, E, ffn, vocab, clip_dim, rope_base, norm_eps, block_size)


def check_state(path, state, shape: DecoderShape):
    """Every tensor the reference's LLaMAHF has, at the shapes `shape` gives, and nothing else."""
    E, F_ = shape.n_embd, shape.ffn
    expected = {"transformer.wte.weight": (shape.vocab_size, E), "transformer.ln_f.scale": (E,),
                "lm_head.weight": (shape.vocab_size - 1, E), "llama_proj.weight": (E, shape.clip_dim),
                "llama_proj.bias": (E,)}
    for i in range(shape.n_layer):
        p = f"transformer.h.{i}."
        expected.update({p + "rms_1.scale": (E,), p + "attn.c_attn.weight": (3 * E, E), p + "attn.c_proj.weight": (E, E),
                         p + "rms_2.scale": (E,), p + "mlp.c_fc1.weight": (F_, E), p + "mlp.c_fc2.weight": (F_, E),
                         p + "mlp.c_proj.weight": (E, F_)})
    check_keys(path, state, expected)
    for name, want in expected.items():
        expect_shape(path, state, name, want)


def convert_state_dict(state, shape: DecoderShape):
    """The reference's names and layouts (checked by check_state) -> MotionDecoder's."""
    E, H = shape.n_embd, shape.n_head
    out = {"llama.embed_tokens.weight": state["transformer.wte.weight"], "llama.norm.weight": state["transformer.ln_f.scale"],
           "lm_head.weight": state["lm_head.weight"], "llama_proj.weight": state["llama_proj.weight"],
           "llama_proj.bias": state["llama_proj.bias"]}
    for i in range(shape.n_layer):
        src, dst = f"transformer.h.{i}.", f"llama.layers.{i}."
        q, k, v = state[src + "attn.c_attn.weight"].split(E, dim=0)
        out.update({
            dst + "input_layernorm.weight": state[src + "rms_1.scale"],
            dst + "self_attn.q_proj.weight": interleaved_to_half_rotation(q, H),
            dst + "self_attn.k_proj.weight": interleaved_to_half_rotation(k, H),
            dst + "self_attn.v_proj.weight": v,
            dst + "self_attn.o_proj.weight": state[src + "attn.c_proj.weight"],
            dst + "post_attention_layernorm.weight": state[src + "rms_2.scale"],
            dst + "mlp.gate_proj.weight": state[src + "mlp.c_fc1.weight"],
            dst + "mlp.up_proj.weight": state[src + "mlp.c_fc2.weight"],
            dst + "mlp.down_proj.weight": state[src + "mlp.c_proj.weight"],
        })
    return out


def read_t2m_checkpoint(path, cfg):
    """Read a `{"trans": ...}` checkpoint (memory-mapped) and check it against the model directory's T2MConfig:
    layer count, width, vocabulary and every tensor's shape. Returns (DecoderShape, the reference's state dict).
    A release folder's manifest names its preset (cfg.preset), which the message names."""
    state = load_state_dict(path, "trans")
    shape = read_decoder_shape(path, state, cfg.n_head, cfg.rope_base, cfg.norm_eps, cfg.block_size)
    if (shape.n_layer, shape.n_embd) != (cfg.n_layer, cfg.n_embd):
        claim = f"the {cfg.preset} preset needs" if cfg.preset else "the model directory's config.json says"
        raise CheckpointError(f"{os.path.basename(path)} has {shape.n_layer} layers of width {shape.n_embd}; {claim} "
                              f"{cfg.n_layer} of width {cfg.n_embd} ({path})")
    if shape.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"{path}: embedding has {shape.vocab_size} rows, the manifest says vocab_size {cfg.vocab_size}")
    check_state(path, state, shape)
    return shape, state


def load_t2m_state(path, cfg):
    """Read, check and convert a `{"trans": ...}` checkpoint; returns (DecoderShape, converted state dict)."""
    shape, state = read_t2m_checkpoint(path, cfg)
    return shape, convert_state_dict(state, shape)

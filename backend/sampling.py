"""The decoding loop: batched prompts, KV cache, greedy / temperature / top-k / top-p, duration control.

Layout of one batch: each row's context is its text followed by its motion-token prefix (none by default). The
contexts are left-padded to the longest (C columns), and new motion tokens follow from column C for every row.
Each row keeps its own positions (motion starts right after its real text length, the prefix first), pad columns
are masked out, text attends both ways and motion (prefix and new) causally, so every row computes exactly what it
computes alone, and continuing from the first k tokens of a result computes what the result's own step k did.
"""
import math
from dataclasses import dataclass

import torch

# Below these, logits / temperature overflow to inf and the nucleus threshold rounds to 0 in float32: every
# token is masked and sampling draws from NaN.
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 100.0
MIN_TOP_P = 1e-6


class Cancelled(Exception):
    """Decoding was cancelled between two steps."""


@dataclass
class SamplingOptions:
    temperature: float = 0.0      # 0 = greedy (the reference)
    top_k: int = 0                # 0 = off
    top_p: float = 1.0            # 1 = off
    min_tokens: int = 0           # END is suppressed before this many tokens
    max_tokens: int = 150         # decoding stops here: one pass (10 s); the reference's demo capped at 50

    def validate(self):
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(f"temperature must be 0 (greedy) or {MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}, "
                             f"got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be ≥ 0, got {self.top_k}")
        if not (math.isfinite(self.top_p) and MIN_TOP_P <= self.top_p <= 1):
            raise ValueError(f"top-p must be in [{MIN_TOP_P:g}, 1], got {self.top_p}")
        if self.max_tokens < 1 or self.min_tokens < 0 or self.min_tokens > self.max_tokens:
            raise ValueError(f"token range {self.min_tokens}..{self.max_tokens} is impossible")

    @property
    def greedy(self):
        return self.temperature == 0


def _mask_value(dtype):
    return torch.finfo(dtype).min


def _filter_logits(logits, opts):
    """Temperature, then top-k, then nucleus (top-p) filtering; rows are independent."""
    logits = logits / opts.temperature
    if opts.top_k:
        kth = torch.topk(logits, min(opts.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= opts.top_p   # keep the smallest prefix reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose_tokens(logits, opts, generators):
    """One token per row. Greedy takes the arg-max; sampling draws with each row's own generator."""
    if opts.greedy:
        return logits.argmax(-1)
    probs = _filter_logits(logits.float(), opts).softmax(-1)
    return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])


def _row_generators(seeds, device):
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s) if s is not None else int(torch.seed()))
        gens.append(g)
    return gens


def fit_prefixes(text_lengths, prefixes, max_tokens, block_size, warn=None):
    """Prefixes cut to their most recent tokens so that text + prefix + new tokens fit the block; one warning line."""
    fitted, dropped = [], []
    for i, (L, prefix) in enumerate(zip(text_lengths, prefixes)):
        room = max(0, block_size - int(L) - max_tokens)
        prefix = list(prefix)
        if len(prefix) > room:
            dropped.append((i, len(prefix) - room))
            prefix = prefix[len(prefix) - room:]
        fitted.append(prefix)
    if dropped and warn is not None:
        rows = ", ".join(f"row {i + 1}: {n}" for i, n in dropped) if len(prefixes) > 1 else f"{dropped[0][1]}"
        warn(f"the motion prefix does not fit the model's {block_size}-position block with the text and "
             f"{max_tokens} new tokens: dropped its oldest tokens ({rows}), kept the most recent")
    return fitted


def _cache(decoder, kind, max_len):
    from transformers import DynamicCache, StaticCache
    if kind == "static":
        return StaticCache(config=decoder.llama.config, max_cache_len=max_len)
    if kind == "dynamic":
        return DynamicCache(config=decoder.llama.config)
    return None


@torch.no_grad()
def generate_tokens(decoder, text_features, opts=SamplingOptions(), seeds=None, cache="dynamic",
                    on_step=None, should_stop=None, prefixes=None, warn=None, decode_step=None):
    """New motion tokens per prompt, END excluded (a prefix is not repeated in the result).

    text_features: list of (L_i, clip_dim) tensors. prefixes: None, or per row a list of motion tokens (any
    length, empty allowed) to continue from; too long a prefix keeps its most recent tokens (fit_prefixes, which
    reports through warn). cache: "static", "dynamic", or "none" (recompute the whole sequence at every step, as
    the reference does; kept for benchmarks and cross-checks).
    on_step(step, max_tokens) reports progress; should_stop() is polled between steps and raises Cancelled.
    decode_step: a backend.decode_step.DecodeStep; where the batch fits it, the steps after the (eager) prefill run
    compiled on its static cache, whatever `cache` says.
    """
    opts.validate()
    B = len(text_features)
    device = decoder.llama_proj.weight.device
    dtype = decoder.llama_proj.weight.dtype
    end = decoder.end_token
    text_len = torch.tensor([f.shape[0] for f in text_features], device=device)
    if prefixes is None:
        prefixes = [[]] * B
    if len(prefixes) != B:
        raise ValueError(f"{len(prefixes)} motion prefixes for {B} prompts")
    prefixes = fit_prefixes(text_len.tolist(), prefixes, opts.max_tokens, decoder.shape.block_size, warn)
    context_len = text_len + torch.tensor([len(p) for p in prefixes], device=device, dtype=torch.long)
    P = int(context_len.max())                                              # new tokens start at column P
    pad = P - context_len                                                   # left padding per row
    max_len = P + opts.max_tokens
    compiled = decode_step is not None and decode_step.fits(B, max_len)
    if compiled:
        max_len, cache = decode_step.cache_len, "static"

    context = torch.zeros(B, P, decoder.shape.n_embd, device=device, dtype=dtype)
    for i, (f, prefix) in enumerate(zip(text_features, prefixes)):
        start = int(pad[i])
        context[i, start:start + f.shape[0]] = decoder.embed_text(f.to(device))
        if prefix:
            ids = torch.tensor(prefix, dtype=torch.long, device=device)
            context[i, start + f.shape[0]:P] = decoder.embed_tokens(ids).to(dtype)
    col = torch.arange(max_len, device=device)
    real = col[None, :] >= pad[:, None]                                     # (B, max_len): not a pad column
    positions = (col[None, :] - pad[:, None]).clamp(min=0)                  # per-row positions
    is_text = real & (col[None, :] < (pad + text_len)[:, None])             # (B, max_len): a text column
    neg = _mask_value(dtype)

    def mask_for(q_cols, k_len):
        """Additive mask (B, 1, len(q_cols), k_len) for queries at columns q_cols over keys 0..k_len-1."""
        k = col[:k_len]
        q = q_cols[:, None]
        both_text = is_text[:, q_cols][:, :, None] & is_text[:, None, :k_len]   # (B, q, k)
        allowed = (k[None, None, :] <= q[None]) | both_text                 # causal, text both ways
        allowed = allowed & real[:, None, :k_len]                           # no pad keys
        allowed = allowed | (~real[:, q_cols])[:, :, None] & (k[None, None, :] == q[None])  # pad query sees itself
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, neg)[:, None]

    generators = None if opts.greedy else _row_generators(seeds if seeds is not None else [None] * B, device)
    kv = decode_step.cache(B) if compiled else _cache(decoder, cache, max_len)
    tokens = torch.empty(B, 0, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n_out = torch.full((B,), opts.max_tokens, device=device)

    embeds = context
    q_cols = col[:P]
    for step in range(opts.max_tokens):
        if should_stop is not None and should_stop():
            raise Cancelled()
        k_len = int(q_cols[-1]) + 1
        mask_k = max_len if cache == "static" else k_len
        forward = decode_step if compiled and step > 0 else decoder
        logits, kv = forward(embeds, mask_for(q_cols, mask_k), positions[:, q_cols], kv)
        logits = logits[:, -1]
        if step < opts.min_tokens:
            logits[:, end] = float("-inf")
        nxt = choose_tokens(logits, opts, generators)
        newly_done = (nxt == end) & ~done
        n_out = torch.where(newly_done, torch.full_like(n_out, step), n_out)
        done |= newly_done
        nxt = torch.where(done, torch.full_like(nxt, end), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        if on_step is not None:
            on_step(step + 1, opts.max_tokens)
        if bool(done.all()) or step + 1 == opts.max_tokens:
            break
        if cache == "none":
            embeds = torch.cat([context, decoder.embed_tokens(tokens).to(dtype)], 1)
            q_cols = col[: P + tokens.shape[1]]
            kv = None
        else:
            embeds = decoder.embed_tokens(nxt[:, None])
            q_cols = col[P + step: P + step + 1]
    out = []
    for i in range(B):
        row = tokens[i, : int(n_out[i])].tolist()
        # The reference returns the single token 1 when END comes first; kept so outputs match it.
        out.append(row if row else [1])
    return out

"""Compiled decoding: one fixed-shape decode step on a static KV cache, compiled once (gpt-fast's decode_one_token).

The prefill runs eager: its length follows the prompts. Every later step has the same shapes for a given batch
size B: the new token's embedding (B, 1, E), its mask (B, 1, 1, CACHE_LEN), its positions (B, 1) and a StaticCache
of CACHE_LEN positions, the longest clip one pass makes (150 text positions + 150 motion tokens). So
torch.compile traces the step once (a second time, with the batch made dynamic, when another B comes), and on
CUDA "reduce-overhead" replays it as a CUDA graph. The caches live here, one per batch size (the last two kept),
so their addresses stay fixed from call to call, as CUDA graphs need.

A compile that fails, for any reason, costs one warning line and the decoding runs eager: a user's generation
never fails because of it. Tokens are the same either way (tests/test_compiled_decoding.py).
"""
import time

import torch

from .options import COMPILE_CHOICES
CACHE_LEN = 304            # ≥ 150 text positions + 150 motion tokens (one pass), rounded up to a multiple of 8
KEPT_CACHES = 2            # batch sizes whose static caches stay allocated
# `--compile auto` on the CPU: off. Measured by `python -m backend bench` (docs/benchmarks.md, "Decoder (cpu-mid,
# cpu)", eager against compiled, best of 3 interleaved): on a 2-core x86-64 the compiled step gave 1.06x, 0.99x and
# 0.96x the eager tokens/s at batch 1, 4 and 16 on oneDNN-packed weights (1.02x, 1.01x, 0.97x in an earlier run: the
# steps are bound by reading the weights), while a cold compile costs 30-45 s per process. Flip it where a bench
# shows otherwise.
CPU_COMPILE_PAYS = False
PREPARING_PHASE = "preparing the GPU kernels, first time only"


def wants_compile(choice, device, cache=None):
    """Whether `--compile choice` compiles on `device`: on CUDA for auto; on the CPU only where measured to pay
    (CPU_COMPILE_PAYS). A cache other than the static one (an explicit dynamic/none) means no compiled step."""
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {choice!r}")
    if choice == "off" or cache in ("dynamic", "none"):
        return False
    if choice == "on":
        return True
    return device.type == "cuda" or CPU_COMPILE_PAYS


def compile_mode(device):
    return "reduce-overhead" if device.type == "cuda" else "default"


def decode_one_token(decoder, embeds, mask, positions, kv):
    """Logits (B, 1, vocab) for one new token per row; the static cache `kv` is updated in place."""
    logits, _ = decoder(embeds, mask, positions, kv)
    return logits


class DecodeStep:
    """decode_one_token, compiled, with the static caches it runs on. Call it as the decoder is called."""

    def __init__(self, decoder, warn=print, cache_len=CACHE_LEN):
        self.decoder = decoder
        self.cache_len = cache_len
        self.device = decoder.llama_proj.weight.device
        self.mode = compile_mode(self.device)
        self.warn = warn
        self.failed = False        # set on the first failure: from then on every step runs eager
        self.compiled_shapes = set()
        self._caches = {}
        self._step = torch.compile(decode_one_token, mode=None if self.mode == "default" else self.mode)

    def fits(self, batch, length):
        """Whether a batch of `length` positions (text + tokens) fits the static cache."""
        return not self.failed and length <= self.cache_len

    def cache(self, batch):
        """An empty static cache for `batch` rows, the same object (and memory) as last time for that batch size."""
        from transformers import StaticCache
        kv = self._caches.pop(batch, None)
        if kv is None:
            while len(self._caches) >= KEPT_CACHES:
                self._caches.pop(next(iter(self._caches)))
            kv = StaticCache(config=self.decoder.llama.config, max_cache_len=self.cache_len)
        else:
            kv.reset()
        self._caches[batch] = kv
        return kv

    def __call__(self, embeds, mask, positions, kv):
        if self.failed:
            return self.decoder(embeds, mask, positions, kv)
        shape = tuple(embeds.shape)
        if shape in self.compiled_shapes:
            return self._run(embeds, mask, positions, kv), kv
        lengths = [layer.cumulative_length.clone() for layer in kv.layers]
        try:
            logits = self._run(embeds, mask, positions, kv)
        except Exception as err:   # noqa: BLE001 — any compile failure, by contract, falls back to eager
            self.failed = True
            for layer, n in zip(kv.layers, lengths):
                layer.cumulative_length.copy_(n)
            first = (str(err).strip().splitlines() or [""])[0][:160]
            self.warn(f"compiled decoding failed ({type(err).__name__}: {first}); decoding eager instead")
            return self.decoder(embeds, mask, positions, kv)
        self.compiled_shapes.add(shape)
        return logits, kv

    def _run(self, embeds, mask, positions, kv):
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
            return self._step(self.decoder, embeds, mask, positions, kv).clone()   # the graph's output is reused
        return self._step(self.decoder, embeds, mask, positions, kv)

    def prepare(self, batch_sizes=(1,), text_len=8):
        """Compile now (a few steps on dummy text per batch size) rather than on a user's first clip. Seconds."""
        from .sampling import SamplingOptions, generate_tokens
        t0 = time.monotonic()
        width = self.decoder.shape.clip_dim
        for b in batch_sizes:
            feats = [torch.zeros(text_len, width, device=self.device) for _ in range(b)]
            generate_tokens(self.decoder, feats, SamplingOptions(min_tokens=3, max_tokens=3), decode_step=self)
            if self.failed:
                break
        return time.monotonic() - t0


def make_decode_step(decoder, choice, cache=None, warn=print):
    """A DecodeStep when `--compile choice` compiles on the decoder's device (else None)."""
    device = decoder.llama_proj.weight.device
    return DecodeStep(decoder, warn) if wants_compile(choice, device, cache) else None

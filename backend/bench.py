"""`python -m backend bench`: the decoder's speed, measured side by side in one run on one model.

- cached decoding against the reference-style loop that recomputes the whole sequence at every step;
- throughput at several batch sizes, eager and compiled (backend/decode_step.py) side by side;
- on CUDA: the decoder's peak VRAM (not yet: the T5-XL total, and a whole 150-token clip end to end);
- a prompt timeline (segments of 5 s, each continuing the stream so far) against as many independent 5 s clips,
  with the worst joins of each, decoded through the tiny conformance model's FSQ tokenizer (its own section).
Random weights at a named size stand in for the release (which cannot be downloaded here); speed does not
depend on the values.
"""
import copy
import os
import platform
import time

import torch

from models.loader import pack_decoder, packs_weights, resolve_device, resolve_precision
from models.manifest import PRESETS
from models.quantize import materialize
from models.t2m import DecoderShape, MotionDecoder
from motionmill_common.bench_report import update_section
from .decode_step import DecodeStep, wants_compile
from .sampling import SamplingOptions, generate_tokens

SIZES = {
    "cpu-mid": DecoderShape(n_layer=8, n_head=8, n_embd=512, ffn=1536, vocab_size=64002, clip_dim=2048),
    "3B": DecoderShape(n_layer=24, n_head=32, n_embd=3200, ffn=8704, vocab_size=64002, clip_dim=2048),
    "7B": DecoderShape(n_layer=36, n_head=32, n_embd=4096, ffn=11008, vocab_size=64002, clip_dim=2048),
}
assert SIZES["7B"].n_layer == PRESETS["7B"]["n_layer"] and SIZES["3B"].n_embd == PRESETS["3B"]["n_embd"]
TEXT_TOKENS = 20
ROUNDS = 3          # eager / compiled timings on the CPU, interleaved; the best of each is reported


def random_decoder(shape, device, dtype, quant, seed=0):
    """A MotionDecoder of `shape` with random weights, each drawn on `device` and quantised as it is placed."""
    with torch.device("meta"):
        decoder = MotionDecoder(shape)
    g = torch.Generator(device=device).manual_seed(seed)
    state = {name: (torch.randn(p.shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(dtype)
             if not name.endswith("norm.weight") and "layernorm" not in name else torch.ones(p.shape, device=device, dtype=dtype)
             for name, p in decoder.state_dict().items()}
    materialize(decoder, state, device, dtype, quant)
    del state
    decoder.llama.rotary_emb = type(decoder.llama.rotary_emb)(decoder.llama.config).to(device)
    return decoder.eval()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def read_bandwidth(device, mib=256, repeats=5):
    """Bytes/s of the fastest plain streaming read here over a tensor far larger than the CPU's last-level cache:
    the best of a sum and of a vector-matrix product (the access pattern a decoder step has). The ceiling for a
    step that must read every weight once."""
    width = 1024
    m = torch.ones(mib * 2 ** 20 // 4 // width, width, device=device)
    v = torch.ones(1, m.shape[0], device=device)
    best = float("inf")
    for read in (m.sum, lambda: v @ m):
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            read()
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return m.numel() * 4 / best


def time_decode(decoder, batch, tokens, cache, repeats=1, decode_step=None):
    """Seconds for `batch` prompts × `tokens` tokens (END suppressed so every run makes all of them), and the
    tokens. With a decode_step, the warm-up compiles it for this batch size first (not timed)."""
    device = decoder.llama_proj.weight.device
    g = torch.Generator(device="cpu").manual_seed(1)
    feats = [torch.randn(TEXT_TOKENS - i % 5, decoder.shape.clip_dim, generator=g).to(device) for i in range(batch)]
    opts = SamplingOptions(min_tokens=tokens, max_tokens=tokens)
    generate_tokens(decoder, feats, SamplingOptions(min_tokens=3, max_tokens=3), cache=cache,
                    decode_step=decode_step)  # warm-up
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = generate_tokens(decoder, feats, opts, cache=cache, decode_step=decode_step)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        assert all(len(o) == tokens for o in out)
    return best, out


def compare_compiled(decoder, batches, tokens, cache, compiled):
    """Table lines and printed lines: eager against the compiled step at each batch size, in one run on one model.
    Tokens are greedy and must agree; the compile time (first call per batch size) is reported, not hidden.
    Each is timed ROUNDS times, eager and compiled in turn, and the best of each is reported."""
    step = DecodeStep(decoder, warn=lambda m: print("warning:", m)) if compiled else None
    if compiled:
        lines = [f"| batch | eager ({cache} cache), s | eager tokens/s | compiled (static cache), s "
                 "| compiled tokens/s | compiled / eager | compiled vs batch 1 | first call (compiles), s | same tokens |",
                 "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines = ["| batch | seconds | tokens/s | vs batch 1 |", "|---|---|---|---|"]
    base = None
    for b in batches:
        if compiled:
            t0 = time.perf_counter()
            time_decode(decoder, b, 3, cache, decode_step=step)      # compiles for this batch size
            first_s = time.perf_counter() - t0
        # Interleaved rounds, best of each: on a shared machine a burst of other work then slows both alike.
        eager_s = comp_s = float("inf")
        for _ in range(ROUNDS if decoder.llama_proj.weight.device.type == "cpu" else 1):   # a GPU is not shared
            s, eager_out = time_decode(decoder, b, tokens, cache)
            eager_s = min(eager_s, s)
            if compiled:
                s, comp_out = time_decode(decoder, b, tokens, cache, decode_step=step)
                comp_s = min(comp_s, s)
        eager_rate = b * tokens / eager_s
        if not compiled:
            base = base or eager_rate
            lines.append(f"| {b} | {eager_s:.2f} | {eager_rate:.1f} | {eager_rate / base:.2f}× |")
            print(f"batch {b}: {eager_s:.2f}s, {eager_rate:.1f} tokens/s")
            continue
        comp_rate = b * tokens / comp_s
        base = base or comp_rate
        fell_back = " (fell back to eager)" if step.failed else ""
        lines.append(f"| {b} | {eager_s:.2f} | {eager_rate:.1f} | {comp_s:.2f}{fell_back} | {comp_rate:.1f} | "
                     f"{comp_rate / eager_rate:.2f}× | {comp_rate / base:.2f}× | {first_s:.1f} | "
                     f"{'yes' if comp_out == eager_out else 'NO'} |")
        print(f"batch {b}: eager {eager_s:.2f}s ({eager_rate:.1f} tokens/s), compiled {comp_s:.2f}s{fell_back} "
              f"({comp_rate:.1f} tokens/s, {comp_rate / eager_rate:.2f}x), first call {first_s:.1f}s, "
              f"same tokens: {comp_out == eager_out}")
    return lines


def _worst_joins(motion, starts):
    """(pelvis, rotation): the worst step at the given frames, each over the motion's own 95th-percentile step."""
    from retarget.continuation import ordinary_steps, seam
    p95_pelvis, p95_rotation = ordinary_steps(motion)
    joins = [seam(_frames(motion, 0, s), _frames(motion, s, None)) for s in starts]
    return max(p for p, _ in joins) / p95_pelvis, max(float(r.max()) for _, r in joins) / p95_rotation


def _frames(motion, start, stop):
    from dataclasses import replace
    return replace(motion, rotations=motion.rotations[start:stop], translation=motion.translation[start:stop])


def bench_timeline(decoder, cache, segments, seconds=5.0, context_tokens=45):
    """(lines, summary): a timeline of `segments` × `seconds` against as many independent clips, same decoder."""
    import numpy as np

    from models.loader import load_normalization
    from models.manifest import load_config
    from models.motion_tokenizer import load_motion_tokenizer
    from retarget.motion import Motion
    from retarget.motion272 import features_to_motion
    from .random_model import tiny_model_dir
    device = decoder.llama_proj.weight.device
    n = int(round(seconds * 15))
    g = torch.Generator(device="cpu").manual_seed(2)
    feats = [torch.randn(TEXT_TOKENS - i % 5, decoder.shape.clip_dim, generator=g).to(device) for i in range(segments)]
    opts = SamplingOptions(min_tokens=n, max_tokens=n)
    generate_tokens(decoder, feats[:1], SamplingOptions(max_tokens=2), cache=cache)  # warm-up

    def timed(fn):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return out, time.perf_counter() - t0

    # Timeline segments and independent one-at-a-time clips alternate, so that a busy machine slows both alike.
    stream, t_timeline, t_single = [], 0.0, 0.0
    for f in feats:
        new, t = timed(lambda f=f: generate_tokens(decoder, [f], opts, cache=cache, prefixes=[stream[-context_tokens:]])[0])
        stream += new
        t_timeline += t
        t_single += timed(lambda f=f: generate_tokens(decoder, [f], opts, cache=cache))[1]
    batched, t_batched = timed(lambda: generate_tokens(decoder, feats, opts, cache=cache))
    starts = [n * 2 * k for k in range(1, segments)]
    lines = [f"A {segments} × {seconds:g} s timeline ({segments * seconds:g} s, {len(stream)} tokens, each segment "
             f"continuing the last {context_tokens} tokens of the stream) against {segments} independent {seconds:g} s "
             f"clips, {TEXT_TOKENS}-token texts, same decoder and run. Command: `python -m backend bench --sections "
             f"timeline{'' if (segments, seconds) == (12, 5) else f' --timeline {segments} --timeline-seconds {seconds:g}'}`.", "",
             "| what | seconds | worst join: pelvis step / the clip's p95 step | worst join: joint rotation / p95 |",
             "|---|---|---|---|"]
    cfg_dir = tiny_model_dir()
    try:
        cfg = load_config(cfg_dir)
        tokenizer = load_motion_tokenizer(cfg.path(cfg.tokenizer.file), cfg.tokenizer).to(device)
        mean, std = load_normalization(cfg)
    except (OSError, ValueError):
        tokenizer = None

    def decode(tokens):
        idx = torch.tensor(tokens, dtype=torch.long, device=device)[None]
        return features_to_motion(tokenizer.decode(idx)[0].double().cpu().numpy() * std + mean)
    if tokenizer is not None:
        tl_joins = _worst_joins(decode(stream), starts)
        clips = [decode(t) for t in batched]
        rotations = np.concatenate([c.rotations for c in clips])
        paths, end = [], np.zeros(3)
        for c in clips:   # chained end to end: each clip's pelvis path starts where the one before ends (x/z)
            path = c.translation.copy()
            path[:, [0, 2]] += end[[0, 2]] - path[0, [0, 2]]
            paths.append(path)
            end = path[-1]
        translation = np.concatenate(paths)
        chained = _worst_joins(Motion(rotations, translation, 30.0), starts)
    fmt = (lambda j: (f"{j[0]:.2f}×", f"{j[1]:.2f}×")) if tokenizer is not None else (lambda j: ("–", "–"))
    tl_cells, ch_cells = fmt(tl_joins if tokenizer else None), fmt(chained if tokenizer else None)
    lines += [f"| timeline, one stream decoded as one motion | {t_timeline:.2f} | {tl_cells[0]} | {tl_cells[1]} |",
              f"| {segments} independent clips, one batch, chained end to end | {t_batched:.2f} | {ch_cells[0]} | {ch_cells[1]} |",
              f"| {segments} independent clips, one at a time | {t_single:.2f} | | |", "",
              "The joins are measured on motion decoded by the tiny conformance model's FSQ tokenizer (random decoder "
              "tokens carry no meaning, so the figures compare the two ways of joining, not motion quality)."
              if tokenizer is not None else "No tokenizer found for the join figures (../shared is missing)."]
    summary = (f"timeline {segments}x{seconds:g}s: {t_timeline:.2f}s vs independent {t_batched:.2f}s batched, "
               f"{t_single:.2f}s one at a time" + (f"; worst join pelvis {tl_joins[0]:.2f}x / rotation "
                                                     f"{tl_joins[1]:.2f}x p95 (chained clips {chained[0]:.2f}x / "
                                                     f"{chained[1]:.2f}x)" if tokenizer is not None else ""))
    return lines, summary


def run_bench(a):
    device = resolve_device(a.device)
    dtype, quant, notes = resolve_precision(device, None, a.quant)
    shape = SIZES[a.size]
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    decoder = random_decoder(shape, device, dtype, quant)
    build_s = time.perf_counter() - t0
    cache = "static" if device.type == "cuda" else "dynamic"
    packed = packs_weights(device, dtype, quant)
    tokens = a.tokens
    sections = set(getattr(a, "sections", "decoder,timeline").split(","))
    if "timeline" in sections and getattr(a, "timeline", 12):
        body, summary = bench_timeline(pack_decoder(copy.deepcopy(decoder)) if packed else decoder, cache, a.timeline,
                                       getattr(a, "timeline_seconds", 5.0))
        print(summary)
        update_section(a.out, f"Timeline ({a.size}, {device.type})", f"Model: random weights, {a.size} "
                       f"({shape.n_layer} layers, E {shape.n_embd}), {quant} quantisation, {str(dtype).removeprefix('torch.')} "
                       f"compute{', packed for oneDNN' if packed else ''}, {cache} cache, on {device.type}.\n\n" + "\n".join(body))
        if "decoder" not in sections:
            print(f"wrote {a.out}")
            return 0
    lines = []
    where = (torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start)")
    header = (f"Model: random weights, {a.size} ({shape.n_layer} layers, E {shape.n_embd}, FFN {shape.ffn}, vocab "
              f"{shape.vocab_size}), {quant} weights{' (packed for oneDNN: models/cpu_linear.py)' if packed else ''}, "
              f"{str(dtype).removeprefix('torch.')} compute, on {where}; "
              f"{tokens} tokens per prompt, {TEXT_TOKENS}-token text. Command: `python -m backend bench --size {a.size}"
              f"{' --device ' + a.device if a.device != 'auto' else ''}"
              f"{' --quant ' + a.quant if a.quant else ''} --tokens {tokens}"
              f"{' --compile ' + a.compile if a.compile != 'on' else ''}`.")
    print(header)
    for note in notes:
        print("note:", note)

    # The reference's modules are plain nn.Linear. On the CPU MotionMill runs the same weights packed for oneDNN
    # (models/cpu_linear.py), so the reference-style loop gets a plain copy, as the reference would run it, and the
    # recompute is also timed on the packed weights to show what the cache alone brings.
    reference = decoder
    if packed:
        decoder = pack_decoder(copy.deepcopy(reference))
    # Every cached step reads all layer and head weights once: at batch 1 that bounds it by memory bandwidth.
    step_bytes = sum(p.numel() * p.element_size() for n, p in reference.named_parameters()
                     if "embed_tokens" not in n and "llama_proj" not in n)
    if packed:
        lines += ["| prompts | reference-style: recompute every step, plain nn.Linear, s | recompute, packed weights, s "
                  "| MotionMill: KV cache (" + cache + "), packed weights, s | speed-up over reference-style | the cache "
                  "alone (same weights) |", "|---|---|---|---|---|---|"]
    else:
        lines += ["| prompts | reference-style (recompute every step), s | KV cache (" + cache + "), s | speed-up |",
                  "|---|---|---|---|"]
    compare = [int(v) for v in a.compare_batches.split(",")]
    cached_first = first_recompute = None
    for b in compare:
        cached, _ = time_decode(decoder, b, tokens, cache, repeats=3)  # short runs: best of three, as timeit does
        recompute, _ = time_decode(reference, b, tokens, "none")
        cached_first = cached_first or cached
        first_recompute = first_recompute or recompute
        if packed:
            same, _ = time_decode(decoder, b, tokens, "none")
            lines.append(f"| {b} | {recompute:.2f} | {same:.2f} | {cached:.2f} | **{recompute / cached:.1f}×** | "
                         f"{same / cached:.1f}× |")
            print(f"batch {b}: reference-style recompute {recompute:.2f}s, recompute on packed weights {same:.2f}s, "
                  f"cached {cached:.2f}s, ratio {recompute / cached:.1f}x (cache alone {same / cached:.1f}x)")
        else:
            lines.append(f"| {b} | {recompute:.2f} | {cached:.2f} | **{recompute / cached:.1f}×** |")
            print(f"batch {b}: recompute {recompute:.2f}s, cached {cached:.2f}s, ratio {recompute / cached:.1f}x")
    bandwidth = read_bandwidth(device)
    floor = step_bytes * tokens / bandwidth
    lines += ["", f"Each cached step at batch {compare[0]} reads {step_bytes / 2 ** 20:.0f} MiB of weights: "
              f"{step_bytes * tokens / cached_first / 2 ** 30:.1f} GiB/s here, against {bandwidth / 2 ** 30:.1f} GiB/s "
              f"for the fastest plain streaming read measured in the same run. At that speed {tokens} steps cannot take less "
              f"than {floor:.2f} s, so at batch {compare[0]} no cache can beat the recompute by more than "
              f"{first_recompute / floor:.1f}× on this machine.", ""]
    print(f"streaming read {bandwidth / 2 ** 30:.1f} GiB/s; batch {compare[0]} floor {floor:.2f}s, "
          f"best possible ratio {first_recompute / floor:.1f}x")

    batches = [int(b) for b in a.batches.split(",")]
    compiled = a.compile == "on" or (a.compile == "auto" and wants_compile("auto", device))
    lines += compare_compiled(decoder, batches, tokens, cache, compiled)
    if compiled:
        lines += ["", "First call: the compile for that batch size (the second size makes the batch dimension dynamic, so "
                  "later sizes reuse it), or its load from Inductor's on-disk cache where an earlier run compiled it. "
                  "Compiled decoding runs the steps after an eager prefill on a static cache of "
                  "backend/decode_step.py's CACHE_LEN positions."]
    if device.type == "cuda":
        vram = torch.cuda.max_memory_allocated() / 2 ** 30
        lines += ["", f"Decoder weights and activations, peak: {vram:.2f} GiB (built in {build_s:.0f} s)."]
    update_section(a.out, f"Decoder ({a.size}, {device.type})", header + "\n\n" + "\n".join(lines))
    print(f"wrote {a.out}")
    return 0

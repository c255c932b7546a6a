"""`python -m backend bench`: the decoder's speed, measured side by side in one run on one model.

- cached decoding against the reference-style loop that recomputes the whole sequence at every step;
- throughput at several batch sizes, eager and compiled (backend/decode_step.py) side by side;
- on CUDA: the decoder's peak VRAM;
- one 150-token clip end to end as `generate` makes it (text encoding, decoding, FSQ decoding, SMPL recovery) on a
  model loaded by the product's loader, in the release's shapes (flan-t5-xl's encoder, the 512-wide FSQ
  tokenizer), or from --model-dir; on CUDA with the memory each part holds and the peak (`--sections clip`);
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
from .options import UserError
from .random_model import FLAN_T5_XL, SIZES as MODEL_SIZES, llama_ffn
from .sampling import SamplingOptions, generate_tokens

# The random-model sizes (backend/random_model.py), as decoder shapes fed by flan-t5-xl's 2048-d features.
SIZES = {name: DecoderShape(**dims, ffn=llama_ffn(dims["n_embd"]), vocab_size=64002, clip_dim=FLAN_T5_XL["d_model"])
         for name, dims in MODEL_SIZES.items()}
assert all(SIZES[size].n_layer == p["n_layer"] and SIZES[size].n_embd == p["n_embd"] for size, p in PRESETS.items())
CLIP_PROMPT = "a zombie shuffles forward, then lunges"
TEXT_TOKENS = 20
ROUNDS = 3          # eager / compiled timings on the CPU, interleaved; the best of each is reported


def judges_goals(size, device, quant):
    """Issue 13's goals are set for the 7B in NF4 on a CUDA GPU: judged where the bench measures exactly that."""
    return size == "7B" and device.type == "cuda" and quant == "nf4"


def goal_line(text, met):
    return f"- {text}: {'met' if met else '**missed**'}"


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


def timed(device, fn):
    """(fn(), its seconds), the device's queued work finished on both sides."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


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
        out, seconds = timed(device, lambda: generate_tokens(decoder, feats, opts, cache=cache, decode_step=decode_step))
        best = min(best, seconds)
        assert all(len(o) == tokens for o in out)
    return best, out


def compare_compiled(decoder, batches, tokens, cache, compiled):
    """(table lines, {batch: tokens/s of the fastest way}), and printed lines: eager against the compiled step at
    each batch size, in one run on one model.
    Tokens are greedy and must agree; the compile time (first call per batch size) is reported, not hidden.
    Each is timed ROUNDS times, eager and compiled in turn, and the best of each is reported."""
    step = DecodeStep(decoder, warn=lambda m: print("warning:", m)) if compiled else None
    if compiled:
        lines = [f"| batch | eager ({cache} cache), s | eager tokens/s | compiled (static cache), s "
                 "| compiled tokens/s | compiled / eager | compiled vs batch 1 | first call (compiles), s | same tokens |",
                 "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines = ["| batch | seconds | tokens/s | vs batch 1 |", "|---|---|---|---|"]
    base, rates = None, {}
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
        eager_rate = rates[b] = b * tokens / eager_s
        if not compiled:
            base = base or eager_rate
            lines.append(f"| {b} | {eager_s:.2f} | {eager_rate:.1f} | {eager_rate / base:.2f}× |")
            print(f"batch {b}: {eager_s:.2f}s, {eager_rate:.1f} tokens/s")
            continue
        comp_rate = rates[b] = b * tokens / comp_s
        base = base or comp_rate
        fell_back = " (fell back to eager)" if step.failed else ""
        lines.append(f"| {b} | {eager_s:.2f} | {eager_rate:.1f} | {comp_s:.2f}{fell_back} | {comp_rate:.1f} | "
                     f"{comp_rate / eager_rate:.2f}× | {comp_rate / base:.2f}× | {first_s:.1f} | "
                     f"{'yes' if comp_out == eager_out else 'NO'} |")
        print(f"batch {b}: eager {eager_s:.2f}s ({eager_rate:.1f} tokens/s), compiled {comp_s:.2f}s{fell_back} "
              f"({comp_rate:.1f} tokens/s, {comp_rate / eager_rate:.2f}x), first call {first_s:.1f}s, "
              f"same tokens: {comp_out == eager_out}")
    return lines, rates


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

    # Timeline segments and independent one-at-a-time clips alternate, so that a busy machine slows both alike.
    stream, t_timeline, t_single = [], 0.0, 0.0
    for f in feats:
        new, t = timed(device, lambda f=f: generate_tokens(decoder, [f], opts, cache=cache, prefixes=[stream[-context_tokens:]])[0])
        stream += new
        t_timeline += t
        t_single += timed(device, lambda f=f: generate_tokens(decoder, [f], opts, cache=cache))[1]
    batched, t_batched = timed(device, lambda: generate_tokens(decoder, feats, opts, cache=cache))
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


def _gib(n):
    return n / 2 ** 30


def bench_clip(a, device, compiled):
    """(header, lines, summary): one clip of a.clip_tokens tokens (END suppressed, so every run makes all of them)
    end to end as `generate` makes it, on a model loaded by models.loader.load_model: a.model_dir, or random weights
    in the release's shapes (the decoder at a.size, a.text_encoder's T5 encoder, the release's 512-wide FSQ
    tokenizer), built in a temporary folder. The parts are then timed one by one, as iter_clips runs them. On CUDA:
    the memory each part holds once loaded (memory_allocated at each loading phase) and the peak while a clip is
    made."""
    import tempfile

    from models.loader import load_model
    from .generation import decode_clips, generate
    from .random_model import build_random_model_dir, build_random_text_encoder
    cuda = device.type == "cuda"
    n = a.clip_tokens
    with tempfile.TemporaryDirectory(prefix="motionmill-bench-clip-") as tmp:
        t0 = time.perf_counter()
        if a.model_dir:
            model_dir, what = a.model_dir, f"the model directory {a.model_dir}"
        else:
            model_dir = os.path.join(tmp, "model")
            text_dir = build_random_text_encoder(os.path.join(model_dir, "text_encoder"), a.text_encoder, device)
            build_random_model_dir(model_dir, **MODEL_SIZES[a.size], tokenizer_width=512, distinct_layers=False,
                                   text_encoder_dir=text_dir)
            encoder = ("a T5 encoder in flan-t5-xl's shape (24 layers, d_model 2048)" if a.text_encoder == "flan-t5-xl"
                       else "the tiny conformance model's T5 encoder")
            what = (f"random weights in the release's shapes: the {a.size} decoder ({MODEL_SIZES[a.size]['n_layer']} "
                    f"layers, E {MODEL_SIZES[a.size]['n_embd']}), {encoder}, the 512-wide FSQ tokenizer")
        build_s = time.perf_counter() - t0
        held = {}

        def at_phase(phase):
            _sync(device)
            held[phase] = torch.cuda.memory_allocated() if cuda else 0
        t0 = time.perf_counter()
        model = load_model(model_dir, device=str(device), quant=a.quant, progress=at_phase)
        _sync(device)
        load_s = time.perf_counter() - t0
    loaded = torch.cuda.memory_allocated() if cuda else 0
    resident = {"text encoder": held["loading motion decoder"] - held["loading text encoder"],
                "decoder": held["loading motion tokenizer"] - held["loading motion decoder"],
                "FSQ tokenizer": loaded - held["loading motion tokenizer"]}
    # each stage is printed as it ends: where a time limit stops the run, what it measured is in the log
    print(("" if a.model_dir else f"built in {build_s:.0f}s, ") + f"loaded in {load_s:.1f}s" + (
        ", GPU memory once loaded: " + ", ".join(
        f"{part} {_gib(v):.2f} GiB" for part, v in resident.items()) if cuda else ""), flush=True)
    step = DecodeStep(model.decoder, warn=lambda m: print("warning:", m)) if compiled else None
    cache = "static" if cuda else "dynamic"
    opts = SamplingOptions(min_tokens=n, max_tokens=n)
    jobs = [(CLIP_PROMPT, 0, 0)]
    _, first_s = timed(device, lambda: generate(model, jobs, opts, cache=cache, decode_step=step))   # compiles, if it does
    print(f"first clip {first_s:.1f}s", flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    best = dict.fromkeys(("total", "text", "decode", "fsq"), float("inf"))
    for _ in range(ROUNDS):
        clips, total = timed(device, lambda: generate(model, jobs, opts, cache=cache, decode_step=step))
        assert len(clips[0].tokens) == n and clips[0].motion.rotations.shape[0] == n * model.config.frames_per_token
        feats, text = timed(device, lambda: model.text_encoder.encode([CLIP_PROMPT]))
        tokens, decode = timed(device, lambda: generate_tokens(model.decoder, feats, opts, [0], cache, decode_step=step))
        _, fsq = timed(device, lambda: list(decode_clips(model, jobs, tokens)))
        for key, value in (("total", total), ("text", text), ("decode", decode), ("fsq", fsq)):
            best[key] = min(best[key], value)
        print(f"clip end to end {total:.3f}s (text {text:.3f}s, decode {decode:.3f}s, FSQ+SMPL {fsq:.3f}s)", flush=True)
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    text_tokens = model.text_encoder.token_count(CLIP_PROMPT)
    frames = n * model.config.frames_per_token
    fell_back = " (the compile failed: eager)" if step is not None and step.failed else ""
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    decoding = "compiled decoding on a static cache" if step is not None else f"eager decoding on a {cache} cache"
    weights = "unquantised" if model.quant == "none" else model.quant
    header = (f"One {n}-token clip ({frames} frames, {frames / model.config.fps:.1f} s) of \"{CLIP_PROMPT}\" "
              f"end to end as `generate` makes it, on {what}; loaded by the product's loader, {weights} decoder "
              f"weights, {str(model.dtype).removeprefix('torch.')} compute, {decoding}{fell_back}, on {where}. "
              f"Best of {ROUNDS}, after a first clip. Command: `python -m backend bench --sections clip"
              + (f" --model-dir {a.model_dir}" if a.model_dir else f" --size {a.size} --text-encoder {a.text_encoder}")
              + f"{' --device ' + a.device if a.device != 'auto' else ''}{' --quant ' + a.quant if a.quant else ''}"
              f"{' --clip-tokens ' + str(n) if n != 150 else ''}{' --compile ' + a.compile if a.compile != 'on' else ''}`.")
    lines = ["| part | seconds |", "|---|---|",
             f"| text encoding ({text_tokens} text tokens) | {best['text']:.3f} |",
             f"| decoding {n} tokens ({n / best['decode']:.1f} tokens/s) | {best['decode']:.3f} |",
             f"| FSQ decoding and SMPL recovery ({frames} frames) | {best['fsq']:.3f} |",
             f"| **the clip end to end, as `generate` runs it** | **{best['total']:.3f}** |", "",
             f"The first clip took {first_s:.1f} s ({'the compile included' if step is not None else 'warm-up'}); "
             f"loading took {load_s:.1f} s{f', building the random model {build_s:.0f} s' if not a.model_dir else ''}."]
    summary = (f"clip of {n} tokens end to end {best['total']:.3f}s (text {best['text']:.3f}s, decode "
               f"{best['decode']:.3f}s = {n / best['decode']:.1f} tokens/s, FSQ+SMPL {best['fsq']:.3f}s); first clip "
               f"{first_s:.1f}s, load {load_s:.1f}s")
    if cuda:
        working = peak - loaded
        lines += ["", "| memory on the GPU | GiB |", "|---|---|"]
        lines += [f"| {part}, resident once loaded | {_gib(v):.2f} |" for part, v in resident.items()]
        lines += [f"| all parts, once loaded | {_gib(loaded):.2f} |",
                  f"| peak while making a clip (all parts and the clip's working memory) | {_gib(peak):.2f} |",
                  f"| the decoder with the clip's working memory (decoder resident + peak − loaded) | "
                  f"{_gib(resident['decoder'] + working):.2f} |"]
        if judges_goals(a.size, device, model.quant) and not a.model_dir:
            decoder_gb = (resident["decoder"] + working) / 1e9
            lines += ["", "Goals for the 7B in NF4 (issue 13):",
                      goal_line(f"a {n}-token clip end to end under 1.5 s once the model is loaded: {best['total']:.2f} s",
                                best["total"] < 1.5),
                      goal_line(f"decoder memory ≤ 6 GB: {decoder_gb:.2f} GB with the clip's working memory, beside "
                                f"{resident['text encoder'] / 1e9:.2f} GB of T5-XL ({peak / 1e9:.2f} GB at the peak, all "
                                "parts)", decoder_gb <= 6)]
        summary += (f"; GPU memory: text encoder {_gib(resident['text encoder']):.2f} GiB, decoder "
                    f"{_gib(resident['decoder']):.2f} GiB, tokenizer {_gib(resident['FSQ tokenizer']):.2f} GiB, "
                    f"peak {_gib(peak):.2f} GiB")
    return header, lines, summary


def run_bench(a):
    device = resolve_device(a.device)
    sections = set(a.sections.split(","))
    unknown = sections - {"decoder", "timeline", "clip"}
    if unknown:
        raise UserError(f"--sections {sorted(unknown)[0]!r}: not a bench section; choose from decoder, timeline, clip")
    if a.model_dir and sections != {"clip"}:
        raise UserError("--model-dir is measured by the clip section alone: add --sections clip")
    if a.size not in SIZES:
        raise UserError(f"--size {a.size!r}: choose one of {', '.join(SIZES)}")
    if "clip" in sections:
        compiled = a.compile == "on" or (a.compile == "auto" and wants_compile("auto", device))
        header, body, summary = bench_clip(a, device, compiled)
        print(summary)
        title = os.path.basename(os.path.normpath(a.model_dir)) if a.model_dir else f"{a.size}, {a.text_encoder}"
        update_section(a.out, f"Clip end to end ({title}, {device.type})", header + "\n\n" + "\n".join(body))
        sections.discard("clip")
        if not sections:
            print(f"wrote {a.out}" if a.out else "")
            return 0
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
    if "timeline" in sections and a.timeline:
        body, summary = bench_timeline(pack_decoder(copy.deepcopy(decoder)) if packed else decoder, cache, a.timeline,
                                       a.timeline_seconds)
        print(summary)
        update_section(a.out, f"Timeline ({a.size}, {device.type})", f"Model: random weights, {a.size} "
                       f"({shape.n_layer} layers, E {shape.n_embd}), {'unquantised' if quant == 'none' else quant + ' quantisation'}, {str(dtype).removeprefix('torch.')} "
                       f"compute{', packed for oneDNN' if packed else ''}, {cache} cache, on {device.type}.\n\n" + "\n".join(body))
        if "decoder" not in sections:
            print(f"wrote {a.out}" if a.out else "")
            return 0
    lines = []
    where = (torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start)")
    header = (f"Model: random weights, {a.size} ({shape.n_layer} layers, E {shape.n_embd}, FFN {shape.ffn}, vocab "
              f"{shape.vocab_size}), {'unquantised' if quant == 'none' else quant} weights{' (packed for oneDNN: models/cpu_linear.py)' if packed else ''}, "
              f"{str(dtype).removeprefix('torch.')} compute, on {where}; "
              f"{tokens} tokens per prompt, {TEXT_TOKENS}-token text. Command: `python -m backend bench --size {a.size}"
              f"{' --device ' + a.device if a.device != 'auto' else ''}"
              f"{' --quant ' + a.quant if a.quant else ''} --tokens {tokens}"
              f"{' --compile ' + a.compile if a.compile != 'on' else ''}"
              f"{' --batches ' + a.batches if a.batches != '1,4,16' else ''}"
              f"{' --compare-batches ' + a.compare_batches if a.compare_batches != '1' else ''} --sections decoder`.")
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
    compare = [int(v) for v in a.compare_batches.split(",")] if a.compare_batches != "none" else []
    if not compare:
        pass
    elif packed:
        lines += ["| prompts | reference-style: recompute every step, plain nn.Linear, s | recompute, packed weights, s "
                  "| MotionMill: KV cache (" + cache + "), packed weights, s | speed-up over reference-style | the cache "
                  "alone (same weights) |", "|---|---|---|---|---|---|"]
    else:
        lines += ["| prompts | reference-style (recompute every step), s | KV cache (" + cache + "), s | speed-up |",
                  "|---|---|---|---|"]
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
    if compare:
        lines += ["", f"Each cached step at batch {compare[0]} reads {step_bytes / 2 ** 20:.0f} MiB of weights: "
                  f"{step_bytes * tokens / cached_first / 2 ** 30:.1f} GiB/s here, against {bandwidth / 2 ** 30:.1f} "
                  f"GiB/s for the fastest plain streaming read measured in the same run. At that speed {tokens} steps "
                  f"cannot take less than {floor:.2f} s, so at batch {compare[0]} no cache can beat the recompute by more "
                  f"than {first_recompute / floor:.1f}× on this machine.", ""]
        print(f"streaming read {bandwidth / 2 ** 30:.1f} GiB/s; batch {compare[0]} floor {floor:.2f}s, "
              f"best possible ratio {first_recompute / floor:.1f}x")
    else:   # --compare-batches none: no reference-style recompute, only the floor a cached step cannot beat
        lines += [f"Each step reads {step_bytes / 2 ** 20:.0f} MiB of weights; the fastest plain streaming read "
                  f"measured in the same run is {bandwidth / 2 ** 30:.1f} GiB/s, so {tokens} steps at batch 1 cannot "
                  f"take less than {floor:.3f} s ({tokens / floor:.0f} tokens/s) on this machine.", ""]
        print(f"streaming read {bandwidth / 2 ** 30:.1f} GiB/s; {tokens} steps at batch 1 no faster than {floor:.2f}s")

    batches = [int(b) for b in a.batches.split(",")]
    compiled = a.compile == "on" or (a.compile == "auto" and wants_compile("auto", device))
    table, rates = compare_compiled(decoder, batches, tokens, cache, compiled)
    lines += table
    if compiled:
        lines += ["", "First call: the compile for that batch size (the second size makes the batch dimension dynamic, so "
                  "later sizes reuse it), or its load from Inductor's on-disk cache where an earlier run compiled it. "
                  "Compiled decoding runs the steps after an eager prefill on a static cache of "
                  "backend/decode_step.py's CACHE_LEN positions."]
    if device.type == "cuda":
        vram = torch.cuda.max_memory_allocated() / 2 ** 30
        lines += ["", f"Decoder weights and activations, peak: {vram:.2f} GiB (built in {build_s:.0f} s)."]
    if judges_goals(a.size, device, quant) and compiled and {1, 16} <= set(rates):
        lines += ["", "Goals for the 7B in NF4 (issue 13; the clip and memory goals are in the \"Clip end to end\" section):",
                  goal_line(f"compiled batch 1 ≥ 150 tokens/s: {rates[1]:.0f}", rates[1] >= 150),
                  goal_line(f"batch 16 throughput ≥ 8× batch 1: {rates[16] / rates[1]:.1f}×", rates[16] >= 8 * rates[1])]
    update_section(a.out, f"Decoder ({a.size}, {device.type})", header + "\n\n" + "\n".join(lines))
    print(f"wrote {a.out}" if a.out else "")
    return 0

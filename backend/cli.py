"""`python -m backend generate | encode | doctor | bench | serve | batch | bench-serve`."""
import argparse
import os
import sys

from motionmill_common.folders import default_model_dir

from . import options
from .options import COMPILE_CHOICES, OptionError, UserError, check_writable, read_prompt_lines, warn
from motionmill_common.protocol import MAX_SEED, MAX_VARIATIONS

ERROR_EXIT = 2


def _add_compile_arg(p, default="auto"):
    p.add_argument("--compile", choices=COMPILE_CHOICES, default=default,
                   help="compiled decoding (torch.compile, a static KV cache): auto = on CUDA; on the CPU only where "
                   "`bench` measured it faster (default: %(default)s)")


def _add_model_args(p, quant=True):
    p.add_argument("--model-dir", help="model directory (default: the user's configured one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="compute dtype (default: bf16 on CUDA, fp32 on CPU)")
    if quant:
        p.add_argument("--quant", choices=["nf4", "int8", "none"], help="decoder weights (default: nf4 on CUDA, none on CPU)")


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m backend", description="MotionMill generation backend")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text -> motion clips")
    _add_model_args(g)
    g.add_argument("--prompt", action="append", default=[], help="a motion description (repeatable)")
    g.add_argument("--prompts", metavar="FILE", help="a text file, one prompt per line")
    g.add_argument("--out", required=True, help="output folder: 000.npz, 001.npz, ... in prompt order (files of those "
                                                "names already there are overwritten, unless --no-clobber)")
    g.add_argument("--no-clobber", action="store_true",
                   help="refuse, before loading the model, when --out already holds a file this run would write")
    g.add_argument("--format", choices=["npz", "bvh"], default="npz")
    g.add_argument("--sampling", choices=["greedy", "sample"], help="greedy (the reference) or sample; "
                   "default: sample when --temperature/--top-k/--top-p is given, else greedy")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, help="base seed; variation v of a prompt uses seed + v")
    g.add_argument("--variations", type=int, default=1, help="clips per prompt")
    g.add_argument("--seconds", type=float, help="clip length in seconds (up to 10): END is suppressed before it; "
                   "default: auto, the model decides (up to 10 s)")
    g.add_argument("--min-seconds", type=float, help="shortest clip; the model may stop anywhere between min and max")
    g.add_argument("--max-tokens", type=int, help="decoding cap in tokens, 2 frames each (default: auto, up to 150 = 10 s, and the "
                   "model's END decides; 50 reproduces the reference's demo)")
    g.add_argument("--min-tokens", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--cache", choices=["static", "dynamic", "none"], help="KV cache kind (default: static on CUDA)")
    _add_compile_arg(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--continue-from", metavar="MOTION", help="continue this motion (interchange/AMASS .npz, .bvh, 272 "
                   ".npy); the output holds only the new frames, in the input's world")
    g.add_argument("--timeline", metavar="FILE", help="one `SECONDS PROMPT` segment per line -> one continuous clip")
    g.add_argument("--context-seconds", type=float, default=3.0, help="how much of the motion so far conditions what "
                   "comes next (default 3 s; 2-4 s is the useful range)")

    e = sub.add_parser("encode", help="motion -> FSQ codes")
    e.add_argument("motion", help="(T, 272) denormalised features .npy")
    e.add_argument("--out", required=True, help="codes .npy")
    _add_model_args(e, quant=False)

    d = sub.add_parser("doctor", help="device, VRAM, library versions, model directory")
    d.add_argument("--model-dir")
    d.add_argument("--json", action="store_true")

    b = sub.add_parser("bench", help="decoder benchmarks; prints them, or with --out updates a markdown file")
    b.add_argument("--model-dir", help="the clip section on a real model directory (default: random weights at --size)")
    b.add_argument("--size", default="cpu-mid", help="random decoder: tiny, cpu-mid (8 layers, E 512), 3B, 7B")
    b.add_argument("--device", default="auto")
    b.add_argument("--quant", choices=["nf4", "int8", "none"])
    b.add_argument("--tokens", type=int, default=150)
    b.add_argument("--batches", default="1,4,16", help="batch sizes for the throughput table")
    b.add_argument("--compare-batches", default="1", help="batch sizes for cached vs recompute (the recompute is slow: 1 keeps "
                   "the default run to a few minutes on 2 cores; none: skip it)")
    b.add_argument("--compile", choices=COMPILE_CHOICES, default="on",
                   help="on (default): eager and compiled decoding side by side; off: eager only; auto: as generate")
    b.add_argument("--out", help="a markdown file whose sections this replaces (docs/benchmarks.md to update the "
                                 "docs); default: print them")
    b.add_argument("--sections", default="decoder,timeline",
                   help="which to run: decoder, timeline, clip (comma-separated; clip: one clip end to end)")
    b.add_argument("--text-encoder", default="flan-t5-xl", choices=["flan-t5-xl", "tiny"],
                   help="the clip section's random T5 encoder: flan-t5-xl's shape (the release's), or the tiny "
                        "conformance model's")
    b.add_argument("--clip-tokens", type=int, default=150, help="the clip section's clip length in tokens (150: 10 s)")
    b.add_argument("--timeline", type=int, default=12, help="segments in the timeline benchmark (0: skip it)")
    b.add_argument("--timeline-seconds", type=float, default=5.0, help="seconds per timeline segment")

    s = sub.add_parser("serve", help="JSON-lines service on stdin/stdout")
    _add_model_args(s)
    s.add_argument("--listen", help="also accept clients on 127.0.0.1:PORT (needs a token: MOTIONMILL_TOKEN or "
                   "--token-file)")
    s.add_argument("--token-file", help="a file holding the --listen secret (at least 16 characters)")
    s.add_argument("--token", help="the --listen secret on the command line: visible to other users, prefer the two above")
    s.add_argument("--max-connections", type=int,
                   help="most --listen connections open at once; one more is answered `busy` and closed (default 64)")
    s.add_argument("--allow-remote-shutdown", action="store_true",
                   help="accept `shutdown` from --listen clients too (by default only from stdin, the owner)")
    s.add_argument("--idle-unload-minutes", type=float, default=0, help="free the model after this idle time (0: never)")
    s.add_argument("--batch-size", type=int, default=16, help="most clips decoded in one pass (halved on out-of-memory)")
    s.add_argument("--cache", choices=["static", "dynamic", "none"], help="KV cache kind (default: static on CUDA)")
    _add_compile_arg(s)
    s.add_argument("--memory-limit-mb", type=float, help="cap working memory above the loaded model (CUDA: allocator "
                   "fraction; CPU: address-space limit); for testing the out-of-memory path")

    bt = sub.add_parser("batch", help="data-parallel batch generation: run under `accelerate launch -m backend batch`")
    _add_model_args(bt)
    bt.add_argument("--prompts", metavar="FILE", required=True, help="one prompt per line; blank and # lines are skipped")
    bt.add_argument("--out", required=True, help="folder: <line:05d>_v<variation>.npz and manifest.jsonl")
    bt.add_argument("--seed", type=int, default=0, help="base seed; clip seeds derive from it, the line and variation")
    bt.add_argument("--variations", type=int, default=1)
    bt.add_argument("--sampling", choices=["greedy", "sample"])
    bt.add_argument("--temperature", type=float)
    bt.add_argument("--top-k", type=int, default=0)
    bt.add_argument("--top-p", type=float, default=1.0)
    bt.add_argument("--seconds", type=float)
    bt.add_argument("--min-seconds", type=float)
    bt.add_argument("--max-tokens", type=int)
    bt.add_argument("--min-tokens", type=int, default=0)
    bt.add_argument("--batch-size", type=int, default=16)
    bt.add_argument("--cache", choices=["static", "dynamic", "none"])
    _add_compile_arg(bt)

    bs = sub.add_parser("bench-serve", help="service throughput: N queued requests batched vs one by one")
    bs.add_argument("--model-dir", help="a model directory; default: random weights at --size")
    bs.add_argument("--size", default="cpu-mid", help="random model size: tiny, cpu-mid (8 layers, E 512), 3B, 7B")
    bs.add_argument("--device", default="auto")
    bs.add_argument("--requests", type=int, default=64)
    bs.add_argument("--seconds", type=float, default=5.0, help="clip length (END suppressed before it)")
    bs.add_argument("--batch-size", type=int, default=64)
    bs.add_argument("--cache", choices=["static", "dynamic", "none"])
    bs.add_argument("--out", help="a markdown file whose 'Service' section this replaces (docs/benchmarks.md to update "
                                  "the docs); default: print it")
    return ap


def _read_prompts(a):
    prompts = list(a.prompt) + ([p for _, p in read_prompt_lines(a.prompts)] if a.prompts else [])
    for i, p in enumerate(prompts):
        if not p.strip():
            raise UserError(f"--prompt {i + 1} is empty: describe the motion, e.g. \"a person walks forward\"")
    return prompts


def check_run_options(a):
    """The options that need no model, checked before the (slow) model load: one line each, no traceback."""
    if getattr(a, "batch_size", 1) < 1:
        raise UserError(f"--batch-size must be at least 1, got {a.batch_size}")
    variations = getattr(a, "variations", 1)
    if not 1 <= variations <= MAX_VARIATIONS:
        raise UserError(f"--variations must be 1..{MAX_VARIATIONS} (the service's cap too), got {variations}")
    seed = getattr(a, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be 0..{MAX_SEED}, got {seed}")
    check_device(a.device)
    if getattr(a, "compile", "auto") == "on" and getattr(a, "cache", None) in ("dynamic", "none"):
        raise UserError(f"--compile on decodes on a static cache: leave out --cache {a.cache} or use --cache static")


def check_device(name):
    try:
        options.check_device(name)
    except OptionError:
        raise UserError(f"--device {name}: not a device; use cpu, cuda, cuda:N or auto") from None


def _flag(field):
    return "--" + field.replace("_", "-")


def sampling_options(a, model_config):
    """SamplingOptions from the parsed flags; a wrong one is a one-line error naming its flag."""
    try:
        return options.sampling_options(model_config, sampling=a.sampling, temperature=a.temperature, top_k=a.top_k,
                                        top_p=a.top_p, seconds=a.seconds, min_seconds=a.min_seconds,
                                        max_tokens=a.max_tokens, min_tokens=a.min_tokens)
    except OptionError as err:
        raise UserError(f"{_flag(err.field)}: {err.message}" if err.field else err.message) from None


def decode_step_for(model, a):
    """The compiled decoding step `--compile` asks for on this model (None: eager)."""
    from .decode_step import make_decode_step
    return make_decode_step(model.decoder, a.compile, a.cache, warn)


def _progress_bar(total_clips, quiet):
    """A tqdm bar on stderr counting clips, with the current token in its postfix; (callback, close)."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total_clips, unit="clip", file=sys.stderr, dynamic_ncols=True, leave=False)

    def on_step(start, size, step, n):
        bar.n = start
        bar.set_postfix_str(f"token {step}/{n}", refresh=True)

    def close():
        bar.n = total_clips
        bar.close()
    return on_step, close


def cmd_generate(a):
    from models.manifest import load_config
    from retarget.continuation import load_continuable

    prompts = _read_prompts(a)
    if a.timeline and prompts:
        raise UserError("--timeline holds the prompts: drop --prompt/--prompts")
    if not prompts and not a.timeline:
        raise UserError("no prompt given: pass --prompt TEXT or --prompts FILE")
    if a.timeline and (a.seconds is not None or a.min_seconds is not None):
        raise UserError("--timeline gives each segment its seconds: drop --seconds/--min-seconds")
    model_dir = a.model_dir or default_model_dir()
    config = load_config(model_dir)
    # The motion to continue is read before torch is imported (seconds) and the model loads: a bad file fails at once.
    source = load_continuable(a.continue_from, a.context_seconds, config.frames_per_token) if a.continue_from else None
    check_run_options(a)
    from models.loader import load_model
    from retarget.bvh import write_bvh
    from .generation import check_prompts, expand_variations, iter_clips, save_clip
    timeline = None
    if a.timeline:
        from .long_motion import read_timeline
        timeline = read_timeline(a.timeline)
    opts = sampling_options(a, config)
    check_writable(a.out)
    if a.no_clobber:
        count = (1 if a.timeline else len(prompts)) * a.variations
        taken = [f"{i:03d}.{a.format}" for i in range(count) if os.path.exists(os.path.join(a.out, f"{i:03d}.{a.format}"))]
        if taken:
            raise UserError(f"--out {a.out} already holds {taken[0]}" + (f" and {len(taken) - 1} more" if len(taken) > 1
                            else "") + ": choose an empty folder, or drop --no-clobber to overwrite")
    model = load_model(model_dir, a.device, a.dtype, a.quant)
    for note in model.notes:
        warn(note)
    if a.timeline or a.continue_from:
        from .long_motion import generate_long_jobs
        on_step, close = _progress_bar((1 if a.timeline else len(prompts)) * a.variations, a.quiet)
        try:
            clips = generate_long_jobs(model, timeline, source, prompts, a.variations, a.seed, opts,
                                       a.context_seconds, a.cache, on_step, warn)
        finally:
            close()
    else:
        check_prompts(prompts, model.text_encoder, warn)
        jobs = expand_variations(prompts, a.variations, a.seed)
        decode_step = decode_step_for(model, a)
        on_step, close = _progress_bar(len(jobs), a.quiet)
        clips = iter_clips(model, jobs, opts, a.batch_size, a.cache, on_step, decode_step=decode_step)
    try:
        # Each clip is on disk as soon as it is decoded: a crash or kill loses only the clips not yet made.
        for i, clip in enumerate(clips):
            path = os.path.join(a.out, f"{i:03d}.{a.format}")
            if a.format == "npz":
                save_clip(path, clip, model.name)
            else:
                write_bvh(path, clip.motion)
            print(path, flush=True)
    finally:
        close()
    return 0


def cmd_encode(a):
    import io

    import numpy as np
    import torch
    from models.loader import load_normalization, resolve_device
    from models.manifest import load_config
    from models.motion_tokenizer import load_motion_tokenizer
    from retarget.safe_read import load_npy

    cfg = load_config(a.model_dir or default_model_dir())
    if os.path.realpath(a.out) == os.path.realpath(a.motion) or (
            os.path.exists(a.out) and os.path.exists(a.motion) and os.path.samefile(a.out, a.motion)):
        raise UserError(f"--out {a.out} is the input motion {a.motion}: refusing to overwrite it; choose another --out")
    check_device(a.device)
    if os.path.isdir(a.out):
        raise UserError(f"--out {a.out} is a folder: name the .npy file to write, e.g. {os.path.join(a.out, 'codes.npy')}")
    features = load_npy(a.motion)     # a regular file, its header's shape checked before it is read
    if features.dtype.kind not in "fiu":
        raise UserError(f"{a.motion}: holds {features.dtype} values, expected numbers (frames, {cfg.tokenizer.motion_dim})")
    if features.ndim != 2 or features.shape[1] != cfg.tokenizer.motion_dim:
        raise UserError(f"{a.motion}: shape {features.shape}, expected (frames, {cfg.tokenizer.motion_dim})")
    if features.shape[0] < cfg.frames_per_token or not np.isfinite(features).all():
        raise UserError(f"{a.motion}: needs at least {cfg.frames_per_token} finite frames")
    check_writable(os.path.dirname(os.path.abspath(a.out)))
    device = resolve_device(a.device)
    mean, std = load_normalization(cfg)
    tokenizer = load_motion_tokenizer(cfg.path(cfg.tokenizer.file), cfg.tokenizer).to(device)
    x = torch.from_numpy((features - mean) / std).float().to(device)[None]
    codes = tokenizer.encode(x)[0].cpu().numpy().astype(np.int64)
    from retarget.interchange import write_whole
    buf = io.BytesIO()  # np.save straight to a file ignores a short write: a full disk would leave a cut .npy
    np.save(buf, codes)
    write_whole(a.out, lambda f: f.write(buf.getbuffer()))   # exactly the path given (np.save appends ".npy")
    print(a.out)
    return 0


def cmd_doctor(a):
    from .doctor import run_doctor
    return run_doctor(a.model_dir or default_model_dir(), as_json=a.json)


def cmd_bench(a):
    from .bench import run_bench
    return run_bench(a)


def cmd_serve(a):
    from .serve import parse_listen, read_token, run_server
    if a.max_connections is not None and a.max_connections < 1:
        raise UserError(f"--max-connections must be at least 1, got {a.max_connections}")
    listen = parse_listen(a.listen) if a.listen else None
    token = read_token(a) if a.listen else None
    return run_server(a, listen, token)


def cmd_batch(a):
    from models.manifest import load_config
    from .batch import run_batch
    prompts = read_prompt_lines(a.prompts)
    if not prompts:
        raise UserError(f"{a.prompts}: no prompts (one per line; blank and # lines are skipped)")
    check_run_options(a)
    model_dir = a.model_dir or default_model_dir()
    opts = sampling_options(a, load_config(model_dir))
    return run_batch(a, prompts, model_dir, opts)


def cmd_bench_serve(a):
    from .bench_serve import run_bench_serve
    return run_bench_serve(a)


COMMANDS = {"generate": cmd_generate, "encode": cmd_encode, "doctor": cmd_doctor, "bench": cmd_bench, "serve": cmd_serve,
            "batch": cmd_batch, "bench-serve": cmd_bench_serve}


def project_errors():
    """The errors that carry a one-line message for the user. Anything else is a bug and shows its traceback."""
    from models.checkpoint import CheckpointError
    from models.model_config import ModelDirError
    from retarget.motion import MotionError
    return UserError, ModelDirError, CheckpointError, MotionError


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        return COMMANDS[a.command](a)
    except Exception as err:
        if not isinstance(err, project_errors()) or os.environ.get("MOTIONMILL_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return ERROR_EXIT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

"""`python -m backend batch`: studio-scale generation, data-parallel over processes (GPUs, machines).

    accelerate launch [--num_processes N] -m backend batch --prompts FILE --out DIR [--variations V] [--seed S]

Every process holds one model replica and takes its share of the clips (accelerate's split_between_processes).
Clip (line i, variation v) is DIR/<i:05d>_v<v>.npz with a seed derived from (seed, i, v) only, and rows of a
batch are independent, so the result does not depend on the number of processes. Clips already on disk are
skipped (they are written atomically), so an interrupted run resumes. Each rank appends what it wrote to
DIR/manifest.rank<r>.jsonl; at the end rank 0 merges them into DIR/manifest.jsonl (one line per clip on disk).
"""
import hashlib
import json
import os
import sys
import time

from .options import UserError, check_writable, warn

MANIFEST = "manifest.jsonl"


def clip_seed(base_seed, line, variation):
    """A 31-bit seed from (base seed, prompt line, variation): independent of sharding and batching."""
    digest = hashlib.sha256(f"motionmill-batch:{base_seed}:{line}:{variation}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def clip_name(line, variation):
    return f"{line:05d}_v{variation}.npz"


def _entry(out_dir, line, variation, path):
    from retarget.interchange import load_interchange
    motion, extras = load_interchange(path)
    return {"file": os.path.basename(path), "line": line, "variation": variation, "prompt": str(extras.get("prompt")),
            "seed": int(extras.get("seed", -1)), "frames": int(motion.rotations.shape[0]),
            "tokens": int(len(extras.get("tokens", ()))), "model": str(extras.get("model"))}


def merge_manifest(out_dir, expected):
    """Rank 0: one manifest line per expected clip that is on disk, from the rank parts (else from the file)."""
    known = {}
    main = os.path.join(out_dir, MANIFEST)
    parts = sorted(n for n in os.listdir(out_dir) if n.startswith("manifest.rank") and n.endswith(".jsonl"))
    for name in ([MANIFEST] if os.path.exists(main) else []) + parts:
        with open(os.path.join(out_dir, name), encoding="utf-8") as f:
            for raw in f:
                try:
                    e = json.loads(raw)
                    known[e["file"]] = e
                except (ValueError, KeyError, TypeError):
                    continue   # a line cut short by an interruption
    lines = []
    for line, variation in expected:
        name = clip_name(line, variation)
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            lines.append(known.get(name) or _entry(out_dir, line, variation, path))
    tmp = main + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for e in lines:
            f.write(json.dumps(e) + "\n")
    os.replace(tmp, main)
    for name in parts:
        os.remove(os.path.join(out_dir, name))
    return len(lines)


def run_batch(a, prompts, model_dir, opts):
    """`a`: the parsed `batch` command (out, seed, variations, device, dtype, quant, batch_size, cache, compile);
    prompts: (line, prompt) pairs; opts: its SamplingOptions, checked by the CLI before anything loads."""
    from accelerate import PartialState
    from models.loader import load_model
    from .decode_step import make_decode_step
    from .generation import check_prompts, iter_clips, save_clip

    state = PartialState(cpu=a.device == "cpu")
    if state.is_main_process:
        check_writable(a.out)
    state.wait_for_everyone()
    expected = [(i, v) for i, _ in prompts for v in range(a.variations)]
    # Decided before any rank writes (the barrier below), so every rank sees the same list.
    pending = [(i, p, v) for i, p in prompts for v in range(a.variations)
               if not os.path.exists(os.path.join(a.out, clip_name(i, v)))]
    state.wait_for_everyone()
    device = a.device
    if device == "auto" and state.device.type == "cuda":
        device = str(state.device)          # one replica per process, on that process's GPU
    model = load_model(model_dir, device, a.dtype, a.quant)
    if state.is_main_process:
        for note in model.notes:
            warn(note)
        check_prompts([p for _, p in prompts], model.text_encoder, warn)
    decode_step = make_decode_step(model.decoder, a.compile, a.cache, warn)
    part = os.path.join(a.out, f"manifest.rank{state.process_index}.jsonl")
    t0 = time.monotonic()
    done = 0
    with state.split_between_processes(pending) as mine:
        with open(part, "a", encoding="utf-8") as manifest:
            for start in range(0, len(mine), a.batch_size):
                chunk = mine[start:start + a.batch_size]
                jobs = [(p, clip_seed(a.seed, i, v), v) for i, p, v in chunk]
                # Written as each is decoded: a kill loses only clips not yet made, and a re-run makes just those.
                for (i, _, v), clip in zip(chunk, iter_clips(model, jobs, opts, a.batch_size, a.cache,
                                                                 decode_step=decode_step)):
                    path = os.path.join(a.out, clip_name(i, v))
                    save_clip(path, clip, model.name, line=i)
                    manifest.write(json.dumps({"file": clip_name(i, v), "line": i, "variation": v, "prompt": clip.prompt,
                                               "seed": clip.seed, "frames": int(clip.motion.rotations.shape[0]),
                                               "tokens": int(len(clip.tokens)), "model": model.name}) + "\n")
                    manifest.flush()
                    done += 1
    print(f"rank {state.process_index}/{state.num_processes}: {done} clips in {time.monotonic() - t0:.1f} s "
          f"({len(expected) - len(pending)} already done)", file=sys.stderr)
    state.wait_for_everyone()
    if state.is_main_process:
        n = merge_manifest(a.out, expected)
        print(os.path.join(a.out, MANIFEST))
        if n != len(expected):
            raise UserError(f"{len(expected) - n} of {len(expected)} clips are missing; run the same command again")
    state.wait_for_everyone()
    return 0

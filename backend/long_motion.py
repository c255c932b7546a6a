"""Long motions: prompt timelines, and continuing an existing motion.

Both grow one motion-token stream. A timeline generates each segment from its own prompt, continuing the stream
so far (its most recent tokens are the segment's prefix). A continuation starts the stream from the FSQ codes of
the input motion's tail. The whole stream is then decoded in one piece, so the FSQ decoder's convolutions join
the segments; a continuation drops the prefix frames and is put back in the input's world (retarget/continuation).
"""
import math
from dataclasses import replace

import numpy as np
import torch

from motionmill_common.protocol import MAX_PROMPTS
from retarget.continuation import (canonical_tail, check_context, load_continuable, place_continuation, read_text_lines,
                                  tail, timeline_lines)
from retarget.motion import MotionError
from retarget.motion272 import features_to_motion, motion_to_features
from .generation import MAX_SECONDS, Clip, check_prompts, expand_variations, seconds_to_tokens
from .options import UserError
from .sampling import generate_tokens

CONTEXT_SECONDS = 3.0     # how much of the input (or of the stream so far) conditions the next tokens
FADE_FRAMES = None        # a continuation's join is cross-faded over as many frames as its gap needs (fade_length)


class LongMotionError(UserError, ValueError):
    """A timeline or a motion to continue that cannot be used: one line, for the CLI (a UserError) and the service
    (which answers a ValueError as bad_request)."""

def _shown_seconds(v):
    return f"{v:g}" if isinstance(v, float) or abs(v) < 1e15 else f"an integer of {len(str(abs(v)))} digits"


def parse_timeline(items, source="timeline"):
    """[(seconds, prompt)] from pairs or {"seconds", "prompt"} dicts; one-line ValueError for bad input."""
    if len(items) > MAX_PROMPTS:  # the service's cap: each segment is one decoding pass
        raise LongMotionError(f"{source}: 1 to {MAX_PROMPTS} timeline segments, got {len(items)}")
    segments = []
    for i, item in enumerate(items):
        seconds, prompt = (item.get("seconds"), item.get("prompt")) if isinstance(item, dict) else item
        # compared, never converted: an integer like 10**400 has no float
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise LongMotionError(f"{source}: segment {i + 1} needs a positive number of seconds, got "
                                  f"{_shown_seconds(seconds) if isinstance(seconds, (int, float)) else repr(seconds)}")
        if not seconds <= MAX_SECONDS:  # one segment is one decoding pass
            raise LongMotionError(f"{source}: segment {i + 1} is {_shown_seconds(seconds)} s, longer than the "
                                  f"{MAX_SECONDS:g} s one segment can make: split it into several segments")
        if not isinstance(prompt, str) or not prompt.strip():
            raise LongMotionError(f"{source}: segment {i + 1} has no prompt")
        segments.append((float(seconds), prompt.strip()))
    if not segments:
        raise LongMotionError(f"{source}: no segments; write one `SECONDS PROMPT` line per segment")
    return segments


def read_timeline(path):
    """A timeline file: one `SECONDS PROMPT` line per segment; blank lines and # comments are skipped. UTF-8, with or
    without a byte-order mark."""
    try:
        lines = read_text_lines(path, "timeline")
    except OSError as err:
        raise LongMotionError(f"cannot read timeline {path}: {err.strerror}") from None
    except MotionError as err:
        raise LongMotionError(str(err)) from None
    items = []
    for n, seconds, prompt, text in timeline_lines(lines):
        if seconds is None:
            raise LongMotionError(f"{path}:{n}: expected `SECONDS PROMPT`, e.g. `5 a person walks forward`; got {text!r}")
        items.append((seconds, prompt))
    return parse_timeline(items, path)


def load_source(path, context_seconds=CONTEXT_SECONDS, frames_per_token=2):
    """Any motion file MotionMill reads, on SMPL-22 at 30 fps, long enough to continue with this context."""
    return load_continuable(path, context_seconds, frames_per_token)


def encode_tail(model, motion, context_seconds=CONTEXT_SECONDS):
    """(codes, floor): FSQ codes of the motion's last context_seconds, in the canonical frame the model expects."""
    canon, floor = canonical_tail(tail(motion, context_seconds, model.config.frames_per_token))
    normalised = model.normalize(motion_to_features(canon))
    x = torch.from_numpy(normalised).float().to(model.device)[None]
    return model.tokenizer.encode(x)[0].cpu().tolist(), floor


def decode_stream(model, tokens):
    """(T, 272) denormalised features of a whole token stream, decoded in one piece."""
    idx = torch.tensor(tokens, dtype=torch.long, device=model.device)[None]
    return model.denormalize(model.tokenizer.decode(idx)[0].double().cpu().numpy())


def _segment_options(opts, seconds, config):
    if seconds is None:  # auto length; at least one token so that a continuation continues
        return replace(opts, min_tokens=max(1, opts.min_tokens))
    n = seconds_to_tokens(seconds, config)
    return replace(opts, min_tokens=n, max_tokens=n)


def generate_long(model, segments, opts, seed=0, source=None, context_seconds=CONTEXT_SECONDS,
                  fade_frames=FADE_FRAMES, cache=None, on_step=None, should_stop=None, warn=None):
    """One continuous Clip for [(seconds or None, prompt)] segments, optionally continuing `source` (a Motion on
    SMPL-22 at 30 fps; the clip then holds only the new frames). Segment k samples with seed + k.
    info: segment_starts (frame of each segment in the clip), segment_prompts."""
    cache = cache or ("static" if model.device.type == "cuda" else "dynamic")
    fpt = model.config.frames_per_token
    context_tokens = max(1, int(round(context_seconds * model.config.fps / fpt)))
    prefix, floor = encode_tail(model, source, context_seconds) if source is not None else ([], 0.0)
    stream, counts = list(prefix), []
    for k, (seconds, prompt) in enumerate(segments):
        seg_opts = _segment_options(opts, seconds, model.config)
        text = model.text_encoder.encode([prompt])
        step_cb = None if on_step is None else (lambda s, n, k=k: on_step(k, 1, s, n))
        new = generate_tokens(model.decoder, text, seg_opts, [seed + k], cache, step_cb, should_stop,
                              prefixes=[stream[-context_tokens:]], warn=warn)[0]
        stream += new
        counts.append(len(new))
    features = decode_stream(model, stream)
    decoded = features_to_motion(features, fps=model.config.fps)
    if source is None:
        motion = decoded
    else:
        motion = place_continuation(decoded, fpt * len(prefix), source, floor, fade_frames)
        features = motion_to_features(motion)
    starts = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64) * fpt
    info = {"segment_starts": starts, "segment_prompts": np.array([p for _, p in segments]),
            "prefix_tokens": np.asarray(prefix, np.int64)}
    return Clip(segments[-1][1] if len(segments) == 1 else " | ".join(p for _, p in segments), seed, 0,
                np.asarray(stream[len(prefix):], np.int64), features, motion, info)



def generate_long_jobs(model, timeline, continue_from, prompts, variations, seed, opts, context_seconds=CONTEXT_SECONDS,
                       cache=None, on_step=None, warn=None, should_stop=None):
    """Clips for the CLI and the service. timeline: a file path, a list of segments, or None; then one clip per
    variation. Without a timeline, one clip per prompt and variation, each continuing `continue_from` (a motion
    file, or a Motion from load_source; with a timeline it is where the timeline starts).
    on_step(clip, 1, step, n) reports progress."""
    check_context(context_seconds)
    source = (load_source(continue_from, context_seconds, model.config.frames_per_token)
              if isinstance(continue_from, str) else continue_from)
    if timeline is not None:
        segments = read_timeline(timeline) if isinstance(timeline, str) else parse_timeline(timeline)
        runs = [(segments, s, v) for _, s, v in expand_variations(["timeline"], variations, seed)]
    else:
        runs = [([(None, p)], s, v) for p, s, v in expand_variations(prompts, variations, seed)]
    check_prompts(list(dict.fromkeys(p for segs, _, _ in runs for _, p in segs)), model.text_encoder,
                  warn or (lambda message: None))
    clips = []
    for i, (segments, s, v) in enumerate(runs):
        step_cb = None if on_step is None else (lambda k, size, step, n, i=i: on_step(i, 1, step, n))
        clip = generate_long(model, segments, opts, s, source, context_seconds, FADE_FRAMES, cache, step_cb,
                             should_stop, warn)
        clip.variation = v
        clips.append(clip)
    return clips

"""Prompts in, motion clips out: text encoding, token decoding, FSQ decoding and 272 -> SMPL recovery."""
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from retarget.motion272 import features_to_motion
from .sampling import SamplingOptions, generate_tokens

MAX_SECONDS = 10.0   # one decoding pass: 150 tokens at 2 frames a token, 30 fps


@dataclass
class Clip:
    prompt: str
    seed: int
    variation: int
    tokens: np.ndarray          # (N,) motion tokens
    features: np.ndarray        # (T, 272) denormalised
    motion: object              # retarget.motion.Motion (SMPL-22, y up, metres)
    info: dict = field(default_factory=dict)


def seconds_to_tokens(seconds, model_config):
    """Requested seconds -> token count (1 token = frames_per_token frames at the model's fps)."""
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {seconds}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {seconds:g} s is longer than the {MAX_SECONDS:g} s one pass can make; "
                         "longer motion is a timeline of segments (--timeline FILE) or a continuation of a clip "
                         "(--continue-from MOTION)")
    return max(1, int(round(seconds * model_config.fps / model_config.frames_per_token)))


def check_prompts(prompts, text_encoder, warn):
    """Refuse empty prompts; warn (once per prompt) about text beyond the encoder's window."""
    if not prompts:
        raise ValueError("no prompt given")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompt {i + 1} is empty: describe the motion, e.g. \"a person walks forward\"")
        n = text_encoder.token_count(p)
        if n > text_encoder.max_tokens:
            warn(f"prompt {i + 1} has {n} text tokens; only the first {text_encoder.max_tokens} condition the motion "
                 "(it is truncated)")


def expand_variations(prompts, variations, seed):
    """(prompt, seed, variation) per output clip; variation v of a prompt uses seed + v."""
    if variations < 1:
        raise ValueError(f"variations must be at least 1, got {variations}")
    base = seed if seed is not None else random.randrange(2 ** 31)
    return [(p, base + v, v) for p in prompts for v in range(variations)]


def decode_clips(model, jobs, token_lists):
    """One Clip per job, yielded as soon as its motion is decoded."""
    for (prompt, seed, variation), tokens in zip(jobs, token_lists):
        idx = torch.tensor(tokens, dtype=torch.long, device=model.device)[None]
        normalised = model.tokenizer.decode(idx)[0].double().cpu().numpy()
        features = model.denormalize(normalised)
        yield Clip(prompt, seed, variation, np.asarray(tokens, np.int64), features,
                   features_to_motion(features, fps=model.config.fps))


def save_clip(path, clip, model_name, **extras):
    """A clip's interchange .npz with what it came from: prompt, seed, variation, model, the clip's own info (a
    timeline's segment starts and prompts, a continuation's prefix tokens) and extras."""
    from retarget.interchange import save_motion
    save_motion(path, clip.motion, features=clip.features, tokens=clip.tokens, prompt=clip.prompt, seed=clip.seed,
                variation=clip.variation, model=model_name, **{**clip.info, **extras})


def generate(model, jobs, opts: SamplingOptions, batch_size=16, cache=None, on_step=None, should_stop=None,
             decode_step=None):
    """Clips for (prompt, seed, variation) jobs, batch_size at a time; results do not depend on batch_size.
    decode_step: a compiled decoding step (backend.decode_step) or None (eager)."""
    return list(iter_clips(model, jobs, opts, batch_size, cache, on_step, should_stop, decode_step))


def iter_clips(model, jobs, opts: SamplingOptions, batch_size=16, cache=None, on_step=None, should_stop=None,
               decode_step=None):
    """generate(), one clip at a time in job order: a caller that writes each at once loses none to a crash."""
    cache = cache or ("static" if model.device.type == "cuda" else "dynamic")
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        features = model.text_encoder.encode([p for p, _, _ in chunk])
        step_cb = None
        if on_step is not None:
            step_cb = lambda s, n, start=start, size=len(chunk): on_step(start, size, s, n)  # noqa: E731
        tokens = generate_tokens(model.decoder, features, opts, [s for _, s, _ in chunk], cache, step_cb, should_stop,
                                 decode_step=decode_step)
        yield from decode_clips(model, chunk, tokens)

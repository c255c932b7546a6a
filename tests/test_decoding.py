"""The decoder and the sampling loop on the tiny real-format model: reference logits, batching, cache,
seeds, duration control, precision."""
import json

import numpy as np
import pytest
import torch

from backend.generation import expand_variations, generate, seconds_to_tokens
from backend.sampling import Cancelled, SamplingOptions, generate_tokens
from models.cpu_linear import PackedLinear, can_pack
from models.loader import load_model, text_encoder_dtype
from models.t2m import interleaved_to_half_rotation, load_t2m_state
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def fixture_dir():
    return shared_path("conformance", "motionmillion-tiny")


@pytest.fixture(scope="module")
def model(fixture_dir):
    return load_model(fixture_dir / "model", device="cpu", dtype="float32", quant="none")


@pytest.fixture(scope="module")
def references(fixture_dir):
    index = json.load(open(fixture_dir / "expected" / "index.json"))
    return [(e["prompt"], np.load(fixture_dir / "expected" / e["file"])) for e in index if e["file"].startswith("gen_")]


@torch.no_grad()
def first_logits(model, prompt):
    feats = model.text_encoder.encode([prompt])[0]
    embeds = model.decoder.embed_text(feats)[None]
    L = embeds.shape[1]
    mask = torch.zeros(1, 1, L, L)  # text attends both ways
    logits, _ = model.decoder(embeds, mask, torch.arange(L)[None])
    return logits[0, -1]


def test_rope_permutation_turns_interleaved_pairs_into_rotate_half():
    H, hd, E = 2, 8, 16
    w = torch.randn(H * hd, E)
    x = torch.randn(E)
    theta = torch.randn(hd // 2)
    q = (w @ x).view(H, hd // 2, 2)                         # interleaved pairs (x0, x1), (x2, x3), ...
    c, s = theta.cos(), theta.sin()
    interleaved = torch.stack([q[..., 0] * c - q[..., 1] * s, q[..., 0] * s + q[..., 1] * c], -1).reshape(H, hd)
    p = (interleaved_to_half_rotation(w, H) @ x).view(H, hd)  # halves: first half the evens, second the odds
    first, second = p[:, : hd // 2], p[:, hd // 2:]
    rotated = torch.cat([first * c - second * s, first * s + second * c], -1)
    # the same rotated vector, in the permuted order
    assert torch.allclose(rotated, interleaved.view(H, hd // 2, 2).transpose(1, 2).reshape(H, hd), atol=1e-6)


def test_text_features_and_first_logits_match_the_reference(model, references):
    for prompt, ref in references:
        feats = model.text_encoder.encode([prompt])[0].numpy()
        np.testing.assert_allclose(feats, ref["text_features"], atol=1e-5)
        np.testing.assert_allclose(first_logits(model, prompt).numpy(), ref["first_logits"], atol=1e-4)


def test_the_text_encoder_computes_in_float32_where_float32_is_asked_for():
    """The conformance numbers need float32 text features on a GPU too (tests/gpu checks the loaded encoder)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert text_encoder_dtype(cpu, torch.bfloat16) == torch.float32
    assert text_encoder_dtype(cuda, torch.float32) == torch.float32
    assert text_encoder_dtype(cuda, torch.bfloat16) == torch.bfloat16       # the default on a GPU, with NF4
    assert text_encoder_dtype(cuda, torch.float16) == torch.bfloat16        # T5 overflows in float16


def test_every_step_matches_the_references_top_logits(model, references):
    prompt, ref = references[0]
    feats = model.text_encoder.encode([prompt])
    seen = []
    # a forward hook sees each step's head output (packed or not) and leaves the module as it was once removed
    hook = model.decoder.lm_head.register_forward_hook(
        lambda module, args, out: seen.append(out[:, -1].float().detach().clone()))
    try:
        tokens = generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=50))[0]
    finally:
        hook.remove()
    assert tokens == ref["tokens"].tolist()
    got = torch.stack(seen)[:, 0]
    top = torch.gather(got, 1, torch.from_numpy(ref["top_ids"]))
    np.testing.assert_allclose(top.numpy(), ref["top_logits"], atol=1e-4)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_cached_decoding_equals_recomputing_and_batching_equals_single(model, references, cache):
    prompts = [p for p, _ in references]
    feats = model.text_encoder.encode(prompts)
    opts = SamplingOptions(max_tokens=20)
    recomputed = generate_tokens(model.decoder, feats, opts, cache="none")
    batched = generate_tokens(model.decoder, feats, opts, cache=cache)
    single = [generate_tokens(model.decoder, [f], opts, cache=cache)[0] for f in feats]
    assert batched == recomputed == single
    assert batched == [ref["tokens"][:20].tolist() for _, ref in references]


def test_sampling_is_reproducible_per_prompt_batched_or_not(model, references):
    prompts = [p for p, _ in references[:4]]
    feats = model.text_encoder.encode(prompts)
    opts = SamplingOptions(temperature=0.9, top_k=50, top_p=0.95, max_tokens=15)
    seeds = [11, 12, 13, 14]
    batched = generate_tokens(model.decoder, feats, opts, seeds)
    single = [generate_tokens(model.decoder, [f], opts, [s])[0] for f, s in zip(feats, seeds)]
    assert batched == single
    again = generate_tokens(model.decoder, feats[:1], opts, [11])
    other_seed = generate_tokens(model.decoder, feats[:1], opts, [99])
    assert again[0] == batched[0] and other_seed[0] != batched[0]
    greedy = generate_tokens(model.decoder, feats[:1], SamplingOptions(max_tokens=15))[0]
    assert batched[0] != greedy


def test_top_k_one_is_greedy(model, references):
    feats = model.text_encoder.encode([references[1][0]])
    sampled = generate_tokens(model.decoder, feats, SamplingOptions(temperature=1.5, top_k=1, max_tokens=10), [5])
    assert sampled[0] == references[1][1]["tokens"][:10].tolist()


@pytest.fixture
def end_loving_model(fixture_dir):
    """The tiny model with a head bias that makes END win every step: a real way to exercise stopping."""
    m = load_model(fixture_dir / "model", device="cpu", dtype="float32", quant="none")
    _, state = load_t2m_state(m.config.path(m.config.t2m.file), m.config.t2m)
    old = m.decoder.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(state["lm_head.weight"])
        head.bias.zero_()
        head.bias[m.decoder.end_token] = 1e4
    m.decoder.lm_head = head
    return m


def test_duration_control_suppresses_end_until_the_minimum(end_loving_model, references):
    m = end_loving_model
    feats = m.text_encoder.encode([references[0][0]])
    assert generate_tokens(m.decoder, feats, SamplingOptions(max_tokens=20))[0] == [1]  # the reference's END-first result
    tokens = generate_tokens(m.decoder, feats, SamplingOptions(min_tokens=7, max_tokens=20))[0]
    assert len(tokens) == 7 and m.decoder.end_token not in tokens


def test_maximum_stops_decoding_and_seconds_map_to_tokens(model, references):
    feats = model.text_encoder.encode([references[0][0]])
    assert len(generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=9))[0]) == 9
    assert seconds_to_tokens(2.0, model.config) == 30
    assert seconds_to_tokens(10.0, model.config) == 150
    for bad in (0, -1, 10.5, float("nan")):
        with pytest.raises(ValueError):
            seconds_to_tokens(bad, model.config)
    with pytest.raises(ValueError, match="impossible"):
        SamplingOptions(min_tokens=10, max_tokens=5).validate()


def test_variations_and_clips(model, references):
    jobs = expand_variations([references[2][0]], 3, seed=100)
    assert [(s, v) for _, s, v in jobs] == [(100, 0), (101, 1), (102, 2)]
    clips = generate(model, jobs, SamplingOptions(temperature=1.0, max_tokens=12))
    assert len({tuple(c.tokens) for c in clips}) == 3
    for c in clips:
        assert c.features.shape == (24, 272)
        assert c.motion.rotations.shape == (24, 22, 3, 3) and c.motion.fps == 30


def test_cancel_between_steps(model, references):
    feats = model.text_encoder.encode([references[0][0]])
    steps = []
    with pytest.raises(Cancelled):
        generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=50), on_step=lambda s, n: steps.append(s),
                        should_stop=lambda: len(steps) >= 3)
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("quant,dtype", [("nf4", None), ("int8", None), ("none", "bfloat16"), ("none", "float16")])
def test_reduced_precision_on_cpu_keeps_logits_close_to_fp32(model, fixture_dir, references, quant, dtype):
    q = load_model(fixture_dir / "model", device="cpu", quant=quant, dtype=dtype)
    layer = q.decoder.llama.layers[0].self_attn.q_proj
    if quant == "none":
        # CPU weights run packed for oneDNN where this CPU takes the dtype (fp32; bf16 only with AVX-512 bf16 or
        # AMX), plain otherwise: the test asks the function the loader asks
        packed = can_pack(torch.device("cpu"), getattr(torch, dtype))
        assert isinstance(layer, PackedLinear) == packed
        assert (layer.packed if packed else layer.weight).dtype == getattr(torch, dtype)
    else:
        assert any("CPU" in n for n in q.notes)
        assert type(layer).__module__.startswith("bitsandbytes")
    for prompt, _ in references[:4]:
        a, b = first_logits(model, prompt), first_logits(q, prompt)
        cos = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0)
        assert cos >= 0.99, f"{quant}/{dtype} cosine {cos:.4f}"


@pytest.mark.parametrize("cache", ["dynamic", "static", "none"])
def test_continuing_from_the_first_k_tokens_reproduces_the_rest(model, references, cache):
    prompts = [p for p, _ in references[:3]]
    feats = model.text_encoder.encode(prompts)
    full = generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=50), cache=cache)
    assert all(len(row) == 50 for row in full)
    for k in (1, 17, 49):
        rest = SamplingOptions(min_tokens=50 - k, max_tokens=50 - k)
        alone = [generate_tokens(model.decoder, [f], rest, cache=cache, prefixes=[row[:k]])[0] for f, row in zip(feats, full)]
        assert alone == [row[k:] for row in full], f"k={k}"
    # rows with different prefix lengths in one batch give what each gives alone
    ks = [5, 30, 12]
    batched = generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=10), cache=cache,
                              prefixes=[row[:k] for row, k in zip(full, ks)])
    assert batched == [row[k:k + 10] for row, k in zip(full, ks)]


def test_a_prefix_too_long_for_the_block_keeps_its_most_recent_tokens(model, references):
    feats = model.text_encoder.encode([references[0][0]])
    L = feats[0].shape[0]
    full = generate_tokens(model.decoder, feats, SamplingOptions(max_tokens=50))[0]
    block = model.decoder.shape.block_size
    warnings = []
    long_prefix = list(range(100, 100 + block)) + full[:20]   # more than the block holds, real tokens last
    opts = SamplingOptions(max_tokens=30)
    got = generate_tokens(model.decoder, feats, opts, prefixes=[long_prefix], warn=warnings.append)[0]
    kept = block - L - 30
    assert len(warnings) == 1 and f"{len(long_prefix) - kept}" in warnings[0]
    assert got == generate_tokens(model.decoder, feats, opts, prefixes=[long_prefix[-kept:]])[0]
    assert generate_tokens(model.decoder, feats, opts, prefixes=[full[:20]], warn=warnings.append)[0] == full[20:50]
    assert len(warnings) == 1  # a prefix that fits says nothing

"""The device check's tests: the model on a CUDA GPU (tests/gpu/device_check.sh runs them with the 7B benchmark).

Each prints one `DEVICE` line with its figures, which the script copies into docs/benchmarks.md.
"""
import json
import resource
import sys

import numpy as np
import pytest
import torch

from backend.decode_step import DecodeStep
from backend.random_model import build_random_model_dir
from backend.sampling import SamplingOptions, generate_tokens
from conftest import ROOT, shared_path
from models.loader import load_model

# Without a GPU each test is skipped with the reason (a conftest.py here would shadow tests/conftest.py: pytest
# imports both as the module `conftest`).
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason=f"no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is "
                                        "False): run tests/gpu/device_check.sh on a GPU machine")]


@pytest.fixture(scope="module")
def fixture_dir():
    return shared_path("conformance", "motionmillion-tiny")


@pytest.fixture(scope="module")
def references(fixture_dir):
    index = json.load(open(fixture_dir / "expected" / "index.json"))
    return [(e["prompt"], np.load(fixture_dir / "expected" / e["file"])) for e in index if e["file"].startswith("gen_")]


@pytest.fixture(scope="module")
def fp32(fixture_dir):
    return load_model(fixture_dir / "model", device="cuda", dtype="float32", quant="none")


def report(line):
    print(f"DEVICE {line}", file=sys.stderr)


@torch.no_grad()
def first_logits(model, prompt):
    feats = model.text_encoder.encode([prompt])[0]
    embeds = model.decoder.embed_text(feats)[None]
    L = embeds.shape[1]
    mask = torch.zeros(1, 1, L, L, device=model.device, dtype=embeds.dtype)   # text attends both ways
    logits, _ = model.decoder(embeds, mask, torch.arange(L, device=model.device)[None])
    return logits[0, -1].float().cpu()


def test_conformance_prompts_on_cuda_fp32(fp32, references):
    """The reference's tokens (CPU, fp32) from the CUDA fp32 decoder; where a token differs, the reference's own
    margin between its top two logits at that step must be a near-tie (CUDA kernels round differently)."""
    assert fp32.text_encoder.model.dtype == torch.float32       # the text features too, as the reference computed
    feats = fp32.text_encoder.encode([p for p, _ in references])
    got = generate_tokens(fp32.decoder, feats, SamplingOptions(max_tokens=50))
    same = differ = 0
    for tokens, (prompt, ref) in zip(got, references):
        want = ref["tokens"].tolist()
        if tokens == want:
            same += 1
            continue
        differ += 1
        step = next(i for i, (a, b) in enumerate(zip(tokens + [None] * 50, want)) if a != b)
        margin = float(ref["step_margins"][step])
        report(f"conformance: {prompt!r} differs first at step {step}, reference margin {margin:.2e}")
        assert margin < 1e-3, f"{prompt!r}: token {step} differs with a reference margin of {margin:.3g}"
    report(f"conformance on CUDA fp32: {same} of {len(references)} prompts token-identical, {differ} at near-ties")


def test_nf4_logits_stay_close_to_bf16(fixture_dir, references):
    bf16 = load_model(fixture_dir / "model", device="cuda", dtype="bfloat16", quant="none")
    nf4 = load_model(fixture_dir / "model", device="cuda", quant="nf4")
    assert type(nf4.decoder.llama.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert nf4.decoder.lm_head.weight.dtype == torch.bfloat16          # the head stays bf16 on CUDA
    cosines = []
    for prompt, _ in references:
        a, b = first_logits(bf16, prompt), first_logits(nf4, prompt)
        cosines.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    report(f"NF4 vs bf16 first-step logits cosine: min {min(cosines):.4f}, mean {np.mean(cosines):.4f}")
    assert min(cosines) >= 0.99


@pytest.mark.parametrize("precision", ["fp32", "nf4"])
def test_compiled_and_eager_decoding_agree_on_cuda(fixture_dir, references, fp32, precision):
    from torch._dynamo.utils import counters
    model = fp32 if precision == "fp32" else load_model(fixture_dir / "model", device="cuda")
    warnings = []
    counters.clear()
    step = DecodeStep(model.decoder, warn=warnings.append)
    assert step.mode == "reduce-overhead"
    feats = model.text_encoder.encode([p for p, _ in references])
    opts = SamplingOptions(max_tokens=50)
    eager = generate_tokens(model.decoder, feats, opts, cache="static")
    batched = generate_tokens(model.decoder, feats, opts, decode_step=step)
    alone = [generate_tokens(model.decoder, [f], opts, decode_step=step)[0] for f in feats[:3]]
    assert not step.failed, warnings
    agree = sum(a == b for row_a, row_b in zip(batched, eager) for a, b in zip(row_a, row_b))
    total = sum(len(r) for r in eager)
    breaks = sum(counters["graph_break"].values())
    report(f"compiled vs eager on CUDA ({precision}): {agree}/{total} tokens agree; alone == batched: "
           f"{alone == batched[:3]}; graph breaks: {breaks}")
    assert breaks == 0, dict(counters["graph_break"])     # a break splits the CUDA graph the step should be
    if precision == "fp32":
        assert batched == eager and alone == eager[:3]
    else:   # bf16 compute: fused kernels round differently, so only near-ties may flip
        assert alone == batched[:3] and agree >= 0.9 * total


def test_serve_end_to_end_on_cuda(fixture_dir, references, tmp_path):
    sys.path.insert(0, str(ROOT))
    from motionmill_common.client import BackendClient
    client = BackendClient(sys.executable, cwd=str(ROOT), model_dir=fixture_dir / "model", device="cuda",
                           extra_args=["--dtype", "float32", "--quant", "none"])
    phases = []
    try:
        rid = client.request("load")
        loaded = client.wait(rid, timeout=600, on_event=lambda e: phases.append(e.get("phase")))
        assert loaded["device"].startswith("cuda") and loaded["compiled"] is True, loaded
        assert "preparing the GPU kernels, first time only" in phases, phases
        prompts = [p for p, _ in references[:4]]
        result = client.wait(client.generate(prompts=prompts, out=str(tmp_path), max_tokens=50), timeout=600)
    finally:
        client.close()
    tokens = [np.load(c["path"])["tokens"].tolist() for c in result["clips"]]
    same = sum(t == ref["tokens"].tolist() for t, (_, ref) in zip(tokens, references))
    report(f"serve on CUDA (fp32, compiled): {same}/{len(prompts)} clips token-identical to the reference, "
           f"{result['timing']['generate_s']:.2f} s for the batch")
    assert same >= len(prompts) - 1


def test_load_model_places_the_7b_shapes_straight_into_nf4(tmp_path):
    """7B preset shapes (36 layers, E 4096, FFN 11008) with random weights: every layer is quantised as it is
    placed, so neither VRAM nor RAM ever holds the whole decoder in bf16 (about 13.5 GB)."""
    model_dir = build_random_model_dir(tmp_path / "7b", n_layer=36, n_embd=4096, n_head=32, distinct_layers=False)
    torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = load_model(model_dir, device="cuda")
    peak_vram = torch.cuda.max_memory_allocated()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    layers = model.decoder.llama.layers
    assert len(layers) == 36 and model.quant == "nf4"
    assert all(type(layer.self_attn.q_proj).__name__ == "Linear4bit" for layer in layers)
    assert layers[0].mlp.gate_proj.weight.quant_state.shape == torch.Size([11008, 4096])
    bf16_bytes = 36 * (4 * 4096 * 4096 + 3 * 4096 * 11008) * 2     # the layers' weights in bf16
    report(f"7B shapes in NF4: peak VRAM while loading {peak_vram / 2 ** 30:.2f} GiB, RAM growth "
           f"{rss_growth / 2 ** 30:.2f} GiB, against {bf16_bytes / 2 ** 30:.1f} GiB for the layers in bf16")
    assert peak_vram < 0.5 * bf16_bytes and rss_growth < 0.5 * bf16_bytes
    out = generate_tokens(model.decoder, model.text_encoder.encode(["a person walks"]), SamplingOptions(max_tokens=4))
    assert len(out[0]) >= 1

"""Compiled decoding (backend/decode_step.py) on the CPU: the same tokens as eager decoding, batched and alone, from
the Python API, `generate --compile on` and the service; a compile that fails falls back with one warning line.

The one test module that compiles (tens of seconds on two cores): the tiny model, greedy fp32, short clips.
"""
import json
import subprocess
import time

import numpy as np
import pytest
import torch

from backend.decode_step import CACHE_LEN, CPU_COMPILE_PAYS, DecodeStep, wants_compile
from backend.sampling import SamplingOptions, generate_tokens
from models.loader import load_model
from tests.conftest import BACKEND_PYTHON, ROOT, shared_path


@pytest.fixture(scope="module")
def fixture_dir():
    return shared_path("conformance", "motionmillion-tiny")


@pytest.fixture(scope="module")
def model(fixture_dir):
    return load_model(fixture_dir / "model", device="cpu", dtype="float32", quant="none")


@pytest.fixture(scope="module")
def references(fixture_dir):
    index = json.load(open(fixture_dir / "expected" / "index.json"))
    return [(e["prompt"], np.load(fixture_dir / "expected" / e["file"])["tokens"].tolist())
            for e in index if e["file"].startswith("gen_")]


@pytest.fixture(scope="module")
def step(model):
    warnings = []
    s = DecodeStep(model.decoder, warn=warnings.append)
    s.warnings = warnings
    return s


def test_compiled_steps_give_the_eager_tokens_batched_and_alone(model, references, step):
    prompts = [p for p, _ in references[:4]]
    feats = model.text_encoder.encode(prompts)
    opts = SamplingOptions(max_tokens=24)
    eager = generate_tokens(model.decoder, feats, opts, cache="static")
    batched = generate_tokens(model.decoder, feats, opts, decode_step=step)
    alone = [generate_tokens(model.decoder, [f], opts, decode_step=step)[0] for f in feats[:2]]
    assert not step.failed and step.warnings == []
    assert {(4, 1, model.decoder.shape.n_embd), (1, 1, model.decoder.shape.n_embd)} <= step.compiled_shapes
    assert batched == eager == [ref[:24] for _, ref in references[:4]]
    assert alone == eager[:2]
    again = generate_tokens(model.decoder, feats, opts, decode_step=step)   # the same cache, reset, reused
    assert again == eager


def test_nf4_layers_compile_whole_with_no_graph_break(fixture_dir, references):
    """bitsandbytes' 4-bit layers (here its CPU kernels) inside the compiled step: traced as one graph (its ops are
    registered torch ops, bitsandbytes PR #1616), no fallback, and the eager tokens. On CUDA tests/gpu checks the
    same with CUDA graphs."""
    from torch._dynamo.utils import counters
    nf4 = load_model(fixture_dir / "model", device="cpu", quant="nf4")
    assert type(nf4.decoder.llama.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    warnings = []
    step = DecodeStep(nf4.decoder, warn=warnings.append)
    feats = nf4.text_encoder.encode([p for p, _ in references[:2]])
    opts = SamplingOptions(max_tokens=8)
    counters.clear()
    compiled = generate_tokens(nf4.decoder, feats, opts, decode_step=step)
    assert not step.failed and warnings == []
    assert dict(counters["graph_break"]) == {}
    assert compiled == generate_tokens(nf4.decoder, feats, opts, cache="static")


def test_a_compile_that_fails_falls_back_to_eager_with_one_warning(model, references):
    warnings = []
    broken = DecodeStep(model.decoder, warn=warnings.append)

    def fails(*args):
        raise RuntimeError("C++ compiler not found\nmore detail")
    broken._step = fails
    feats = model.text_encoder.encode([p for p, _ in references[:2]])
    opts = SamplingOptions(max_tokens=12)
    assert generate_tokens(model.decoder, feats, opts, decode_step=broken) == [r[:12] for _, r in references[:2]]
    assert broken.failed and len(warnings) == 1
    assert "compiled decoding failed (RuntimeError: C++ compiler not found); decoding eager" in warnings[0]
    assert generate_tokens(model.decoder, feats, opts, decode_step=broken) == [r[:12] for _, r in references[:2]]
    assert len(warnings) == 1


def test_a_clip_longer_than_the_static_cache_decodes_eager(model, references, step):
    assert step.fits(1, CACHE_LEN) and not step.fits(1, CACHE_LEN + 1)


def test_when_compile_applies():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert wants_compile("auto", cuda) and wants_compile("on", cpu) and not wants_compile("off", cuda)
    assert wants_compile("auto", cpu) == CPU_COMPILE_PAYS        # decided by the bench (docs/benchmarks.md)
    assert not wants_compile("auto", cuda, cache="dynamic") and not wants_compile("on", cpu, cache="none")
    with pytest.raises(ValueError):
        wants_compile("sometimes", cpu)


def _generate(model_dir, out, prompts, *extra):
    cmd = [BACKEND_PYTHON, "-m", "backend", "generate", "--model-dir", str(model_dir), "--sampling", "greedy",
           "--max-tokens", "50", "--device", "cpu", "--dtype", "float32", "--out", str(out), "--quiet", *extra]
    for p in prompts:
        cmd += ["--prompt", p]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_generate_compile_on_gives_the_conformance_tokens(fixture_dir, references, tmp_path):
    """The conformance check's own command (../shared/conformance/check.py), with --compile on: the reference's
    tokens, which --compile off gives too (the conformance check)."""
    p = _generate(fixture_dir / "model", tmp_path, [p for p, _ in references], "--compile", "on")
    assert p.returncode == 0, p.stderr
    assert "compiled decoding failed" not in p.stderr
    for i, (_, ref) in enumerate(references):
        assert np.load(tmp_path / f"{i:03d}.npz")["tokens"].tolist() == ref, i


def test_compile_on_with_a_dynamic_cache_is_one_error_line(fixture_dir, tmp_path, capsys):
    from backend.cli import main       # in-process: the options are refused before anything loads
    rc = main(["generate", "--model-dir", str(fixture_dir / "model"), "--prompt", "walk", "--out", str(tmp_path / "o"),
               "--compile", "on", "--cache", "dynamic"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error: ") == 1 and "--compile on decodes on a static cache" in err
    assert not (tmp_path / "o").exists()


def test_the_service_compiles_at_load_and_reports_the_phase(fixture_dir, references, tmp_path):
    from backend.service_queue import Service

    class Owner:
        def __init__(self):
            self.events = []

        def send(self, event):
            self.events.append(event)

    def wait_final(owner):
        deadline = time.monotonic() + 300
        while not any(e.get("final") for e in owner.events):
            assert time.monotonic() < deadline, owner.events
            time.sleep(0.05)
        return [e for e in owner.events if e.get("final")][0]

    service = Service(str(fixture_dir / "model"), "cpu", "float32", "none", compile="on")
    service.start()
    try:
        loader = Owner()
        service.submit_control("load", {"id": "l", "op": "load"}, loader)
        loaded = wait_final(loader)
        assert loaded["event"] == "loaded" and loaded["compiled"] is True, loader.events
        phases = [e.get("phase") for e in loader.events if e.get("event") == "progress"]
        assert phases[-1] == "preparing the compiled decoder, first time only", phases
        client = Owner()
        service.submit_generate({"id": "g", "op": "generate", "prompts": [p for p, _ in references[:3]],
                                 "max_tokens": 20, "out": str(tmp_path)}, client)
        result = wait_final(client)
        assert result["event"] == "result", client.events
        assert [np.load(c["path"])["tokens"].tolist() for c in result["clips"]] == [r[:20] for _, r in references[:3]]
    finally:
        service.stop()

"""`python -m backend batch`: two torchrun (gloo) processes produce exactly the clips one process produces,
and a re-run only makes the clips that are missing."""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import ROOT, shared_path

PROMPTS = "a person walks forward\n\n# a comment line\na man jumps high\na person waves\nsomeone runs in a circle\na dancer spins\n"


def _batch(launcher, prompts, out, *extra):
    model = shared_path("conformance", "motionmillion-tiny", "model")
    cmd = launcher + ["-m", "backend", "batch", "--prompts", str(prompts), "--out", str(out), "--model-dir", str(model),
                      "--device", "cpu", "--variations", "2", "--seed", "5", "--sampling", "sample",
                      "--temperature", "0.9", "--max-tokens", "20", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _clips(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".npz"):
            with np.load(folder / name) as d:
                out[name] = {k: d[k] for k in ("tokens", "rotations", "translation", "seed", "prompt")}
    return out


def _manifest(folder):
    with open(folder / "manifest.jsonl") as f:
        return [json.loads(line) for line in f]


def test_two_processes_make_the_same_clips_as_one(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    _batch([sys.executable], prompts, tmp_path / "one", "--batch-size", "3")
    _batch([os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2", "--master_port", "29533"],
           prompts, tmp_path / "two", "--batch-size", "4")
    one, two = _clips(tmp_path / "one"), _clips(tmp_path / "two")
    assert sorted(one) == [f"{i:05d}_v{v}.npz" for i in (0, 3, 4, 5, 6) for v in (0, 1)] == sorted(two)
    for name in one:
        for key in one[name]:
            assert np.array_equal(one[name][key], two[name][key]), (name, key)
    assert len({int(c["seed"]) for c in one.values()}) == 10
    assert _manifest(tmp_path / "one") == _manifest(tmp_path / "two")
    assert [(e["line"], e["variation"]) for e in _manifest(tmp_path / "two")] == [(i, v) for i in (0, 3, 4, 5, 6) for v in (0, 1)]
    assert not [n for n in os.listdir(tmp_path / "two") if n.startswith("manifest.rank")]


def test_rerun_resumes_only_missing_clips(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path / "out"
    _batch([sys.executable], prompts, out)
    before = _clips(out)
    stamps = {n: os.stat(out / n).st_mtime_ns for n in before}
    for name in ("00003_v1.npz", "00006_v0.npz"):      # an interrupted night: two clips never made it
        os.remove(out / name)
    r = _batch([sys.executable], prompts, out)
    assert "2 clips" in r.stderr and "8 already done" in r.stderr
    after = _clips(out)
    for name in before:
        for key in before[name]:
            assert np.array_equal(before[name][key], after[name][key])
        if name not in ("00003_v1.npz", "00006_v0.npz"):
            assert os.stat(out / name).st_mtime_ns == stamps[name]
    assert len(_manifest(out)) == 10

"""Hostile input, second round (issue 24): every output is written whole or not at all. generate's .npz/.bvh and
encode's .npy go to a temp file in the same folder and are renamed; a failed write (a full disk, a file-size limit)
removes the temp file and is one line naming the path. encode refuses what it cannot encode in one line. Real
subprocesses on the tiny model, each bounded in time."""
import os
import resource
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from serve_helpers import tiny_model

PY = sys.executable


def run(*args, file_limit=None, timeout=60):   # a bound on a hang, not a speed test
    def limit():    # writes past `file_limit` bytes fail with EFBIG (SIGXFSZ ignored), as on a nearly full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([PY, "-m", "backend", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, preexec_fn=limit if file_limit else None)


def error_line(p):
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0].removeprefix("error: ")


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """A (60, 272) feature clip the tiny model encodes: the mean pose, held."""
    path = tmp_path_factory.mktemp("features") / "clip.npy"
    np.save(path, np.repeat(np.load(tiny_model() / "mean.npy")[None], 60, axis=0))
    return path


@pytest.mark.parametrize("fmt", ["bvh", "npz"])
def test_a_clip_that_cannot_be_written_whole_leaves_nothing(tmp_path, fmt):
    out = tmp_path / "out"
    p = run("generate", "--model-dir", tiny_model(), "--device", "cpu", "--quiet", "--prompt", "a person walks",
            "--seconds", "1", "--format", fmt, "--out", out, file_limit=2000)
    assert error_line(p) == f"cannot write {out / f'000.{fmt}'}: File too large"
    assert os.listdir(out) == []       # neither a cut 000.{fmt} nor a temp file


def test_encode_to_a_full_device_names_it_and_leaves_it_a_device(features):
    p = run("encode", "--model-dir", tiny_model(), "--device", "cpu", features, "--out", "/dev/full")
    assert error_line(p) == "cannot write /dev/full: no space left on /dev/full; free some space or write elsewhere"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)    # written to, not renamed over


def test_encode_that_cannot_be_written_whole_leaves_nothing(features, tmp_path):
    out = tmp_path / "codes.npy"
    p = run("encode", "--model-dir", tiny_model(), "--device", "cpu", features, "--out", out, file_limit=200)
    assert error_line(p) == f"cannot write {out}: File too large"
    assert os.listdir(tmp_path) == []


def test_encode_refuses_what_it_cannot_encode_in_one_line(features, tmp_path, capsys):
    from backend.cli import main       # in-process: what `python -m backend` runs, without three torch start-ups
    strings = tmp_path / "strings.npy"
    np.save(strings, np.full((60, 272), "a"))
    archive = tmp_path / "clip.npz"
    np.savez(archive, features=np.load(features))
    for motion, out, named in ((strings, tmp_path / "a.npy", f"{strings}: holds <U1 values, expected numbers"),
                               (archive, tmp_path / "b.npy", f"{archive}: the array is not a readable .npy array"),
                               (features, tmp_path, f"--out {tmp_path} is a folder: name the .npy file to write")):
        rc = main(["encode", "--model-dir", str(tiny_model()), "--device", "cpu", str(motion), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {named}"), err
    assert sorted(os.listdir(tmp_path)) == ["clip.npz", "strings.npy"]


def test_a_clip_with_non_finite_values_is_never_written(tmp_path):
    """A (60, 272) feature file of 1e300 decodes to a finite float64 motion whose translation is infinite in the
    float32 of a clip: refused as a source in one line, and the writer itself refuses such a clip."""
    huge = tmp_path / "huge.npy"
    np.save(huge, np.full((60, 272), 1e300))
    out = tmp_path / "out"
    p = run("generate", "--model-dir", tiny_model(), "--device", "cpu", "--quiet", "--prompt", "a person walks",
            "--seconds", "1", "--continue-from", huge, "--out", out)
    assert error_line(p).startswith(f"{huge}: its translation reaches 1e+300 m, beyond what a clip can hold")
    assert not out.exists() or os.listdir(out) == []
    from retarget.formats import load_any
    from retarget.interchange import save_motion
    from retarget.motion import MotionError
    out.mkdir(exist_ok=True)
    with pytest.raises(MotionError) as err:
        save_motion(out / "clip.npz", load_any(huge))
    assert str(err.value) == (f"{out / 'clip.npz'}: not written: its 'translation' would hold NaN or infinite values "
                              "(NaN, or beyond float32's 3.4e38); the motion it came from is not usable")
    assert os.listdir(out) == []

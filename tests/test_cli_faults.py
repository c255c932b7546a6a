"""The CLIs under careless input and faults (issue 11): one-line errors before the model loads, nothing lost on disk.
Real subprocesses on the tiny conformance model."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from retarget.interchange import TEMP_PREFIX, load_interchange
from tests.conftest import ROOT, shared_path

PY = sys.executable


def backend(*args, timeout=300, umask=None, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([PY, "-m", "backend", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


@pytest.fixture(scope="module")
def model_dir():
    return shared_path("conformance", "motionmillion-tiny", "model")


@pytest.fixture(scope="module")
def unloadable_model_dir(model_dir, tmp_path_factory):
    """The tiny model with a decoder checkpoint that cannot load: an option error that names the option, not this,
    proves the options were checked before the model was loaded."""
    d = tmp_path_factory.mktemp("unloadable") / "model"
    shutil.copytree(model_dir, d)
    (d / "t2m.pth").write_bytes(os.urandom(4096))
    return d


def one_error_line(p):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


BAD_OPTIONS = [
    (["--sampling", "sample", "--temperature", "nan"], "temperature"),
    (["--sampling", "sample", "--temperature", "1e-320"], "temperature"),
    (["--sampling", "sample", "--top-p", "1e-320"], "top-p"),
    (["--device", "bogus"], "--device bogus"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--seed", str(2 ** 64)], "--seed"),
    (["--variations", "0"], "--variations"),
    (["--variations", "65"], "1..64"),
]


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_bad_options_are_one_line_before_the_model_loads(command, unloadable_model_dir, tmp_path, capsys):
    from backend.cli import main       # in-process: what `python -m backend` runs, without 18 torch start-ups
    prompts = tmp_path / "p.txt"
    prompts.write_text("a person walks\n")
    for args, named in BAD_OPTIONS:
        rc = main([command, "--model-dir", str(unloadable_model_dir), "--prompts", str(prompts), "--out",
                   str(tmp_path / "out"), *args])
        err = capsys.readouterr().err
        assert rc == 2 and named in one_error_line(subprocess.CompletedProcess([], rc, "", err)), (args, err)
        assert not (tmp_path / "out").exists()      # nothing made before the options were known to be good
    # and as a process: one line, exit status 2, no traceback
    p = backend(command, "--model-dir", unloadable_model_dir, "--prompts", prompts, "--out", tmp_path / "out",
                *BAD_OPTIONS[0][0])
    assert "temperature" in one_error_line(p)


def test_a_prompts_file_that_is_not_utf8_names_the_file_and_line(model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("a person walks\n# ok\ncaf\u00e9 dance\n".encode("utf-8") + b"a man \xe9jumps\n")
    for command in ("generate", "batch"):
        line = one_error_line(backend(command, "--model-dir", model_dir, "--prompts", prompts, "--out", tmp_path / "o"))
        assert str(prompts) in line and "line 4" in line and "UTF-8" in line


def test_a_model_dir_that_cannot_load_is_still_one_line(unloadable_model_dir, tmp_path):
    p = backend("generate", "--model-dir", unloadable_model_dir, "--prompt", "a person walks", "--out", tmp_path)
    assert "t2m.pth" in one_error_line(p)


def _dead_pid():
    p = subprocess.Popen([PY, "-c", "pass"])
    p.wait()
    return p.pid


def test_clips_follow_the_umask_and_only_stale_temp_files_are_removed(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    stale = out / f"{TEMP_PREFIX}{host}-{_dead_pid()}-0000.npz"          # a writer killed mid-write
    live = out / f"{TEMP_PREFIX}{host}-{os.getpid()}-1111.npz"          # a writer still running (this test)
    mine = [out / ".tmp-notes.npz", out / "notes.txt", out / "motionmill-tmp-x.npz"]   # the user's: never touched
    for f in [stale, live, *mine]:
        f.write_bytes(b"partial")
    p = backend("generate", "--model-dir", model_dir, "--prompt", "a person walks", "--variations", "2",
                "--seconds", "1", "--out", out, umask=0o027)
    assert p.returncode == 0, p.stderr
    assert "removed 1 temp file" in p.stderr
    assert not stale.exists() and live.exists() and all(f.read_bytes() == b"partial" for f in mine)
    for name in ("000.npz", "001.npz"):
        assert os.stat(out / name).st_mode & 0o777 == 0o640, oct(os.stat(out / name).st_mode)
        load_interchange(out / name)
    assert sorted(os.listdir(out)) == sorted(["000.npz", "001.npz", live.name] + [f.name for f in mine])


def test_encode_refuses_to_overwrite_its_input_and_writes_exactly_the_path_given(model_dir, tmp_path, capsys):
    from backend.cli import main
    ref = np.load(shared_path("conformance", "motionmillion-tiny", "expected", "motion_00.npz"))
    motion = tmp_path / "motion.npy"
    np.save(motion, ref["features"])
    before = motion.read_bytes()
    (tmp_path / "link.npy").symlink_to(motion)
    for out in (motion, tmp_path / "link.npy", tmp_path / "." / "motion.npy"):
        assert main(["encode", "--model-dir", str(model_dir), str(motion), "--out", str(out)]) == 2
        assert "is the input motion" in capsys.readouterr().err
    assert motion.read_bytes() == before
    p = backend("encode", "--model-dir", model_dir, motion, "--out", tmp_path / "codes.bin")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "codes.bin").exists() and not (tmp_path / "codes.bin.npy").exists()
    assert np.array_equal(np.load(tmp_path / "codes.bin"), ref["codes"])


def test_batch_killed_after_its_fourth_clip_resumes_exactly_the_missing_ones(model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a person walks, take {i}\n" for i in range(6)))
    out = tmp_path / "out"
    # --batch-size 1: one decoding pass per clip, so "after the 4th clip" is a moment the test can catch
    cmd = [PY, "-m", "backend", "batch", "--model-dir", str(model_dir), "--device", "cpu", "--prompts", str(prompts),
           "--out", str(out), "--seconds", "10", "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clips = []
    deadline = time.monotonic() + 240
    while len(clips) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        clips = sorted(n for n in os.listdir(out) if n.endswith("_v0.npz")) if out.exists() else []
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    # what a kill in the middle of the next write leaves: a temp file named for the killed writer
    (out / f"{TEMP_PREFIX}{socket.gethostname()}-{proc.pid}-dead.npz").write_bytes(b"half a clip")
    written = sorted(n for n in os.listdir(out) if n.endswith(".npz") and not n.startswith("."))
    assert len(written) >= 4 and written[:4] == clips[:4] and len(written) < 6, written
    stamps = {}
    for name in written:
        load_interchange(out / name)                                     # intact
        stamps[name] = os.stat(out / name).st_mtime_ns
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{6 - len(written)} clips" in r.stderr and f"{len(written)} already done" in r.stderr
    final = sorted(os.listdir(out))
    assert final == [f"{i:05d}_v0.npz" for i in range(6)] + ["manifest.jsonl"], final   # no temp files left
    assert all(os.stat(out / n).st_mtime_ns == stamps[n] for n in written)            # not rewritten
    print(f"FAULTS kill9: killed with {len(written)} of 6 clips on disk; all intact; the re-run made "
          f"{6 - len(written)} and left no temp files")


def test_generate_writes_each_clip_before_the_next_is_decoded(model_dir, tmp_path):
    # --batch-size 1 and 3 clips: the first clip's path is printed (the file complete) while the later ones decode
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PY, "-m", "backend", "generate", "--model-dir", str(model_dir), "--prompt", "a person walks",
                             "--variations", "3", "--seconds", "10", "--batch-size", "1", "--quiet", "--out",
                             str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    later_exists = (tmp_path / "002.npz").exists()
    load_interchange(first)
    assert proc.wait(120) == 0, proc.stderr.read()
    assert first.endswith("000.npz") and not later_exists

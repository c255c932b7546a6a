"""`backend serve` and the add-on's client, as real subprocesses on the tiny conformance model."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from serve_helpers import pid_alive, start_client, tiny_model
from blender_addon.client import BackendCrashed, BackendError

PY = sys.executable


def _arrays(path):
    with np.load(path) as d:
        return {k: d[k] for k in ("tokens", "rotations", "translation")}


def test_client_imports_without_bpy_or_torch():
    code = ("import sys; from blender_addon.client import BackendClient; import blender_addon; "
            "print(sorted(m for m in ('bpy', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_generate_writes_clips_that_match_the_library(tmp_path):
    from backend.generation import expand_variations, generate
    from backend.sampling import SamplingOptions
    from models.loader import load_model
    with start_client() as c:
        hello = c.call("hello", timeout=60)
        assert hello["protocol"] == 1 and "generate" in hello["ops"] and hello["loaded"] is False
        seen, on_disk = [], []
        rid = c.generate(prompts=["a person walks forward", "a man jumps"], out=tmp_path, seconds=1, seed=11,
                         variations=2, sampling="sample", temperature=0.8, name="walk")

        def on_event(e):
            seen.append(e)
            if e["event"] == "clip":   # each clip is on disk when its own event arrives, before the result
                on_disk.append(os.path.exists(e["path"]))
        result = c.wait(rid, timeout=120, on_event=on_event)
    assert result["event"] == "result" and len(result["paths"]) == 4
    assert {e["event"] for e in seen} == {"progress", "clip"}
    clip_events = [e for e in seen if e["event"] == "clip"]
    assert [e["path"] for e in clip_events] == result["paths"] and on_disk == [True] * 4
    assert [e["index"] for e in clip_events] == [0, 1, 2, 3]
    assert {"queued", "decoding", "writing"} <= {e["phase"] for e in seen if e["event"] == "progress"}
    model = load_model(tiny_model(), "cpu")
    jobs = expand_variations(["a person walks forward", "a man jumps"], 2, 11)
    want = generate(model, jobs, SamplingOptions(0.8, 0, 1.0, 15, 15), batch_size=1)
    for clip_info, path, clip in zip(result["clips"], result["paths"], want):
        assert os.path.basename(path).startswith("walk_") and os.path.exists(path)
        got = _arrays(path)
        assert np.array_equal(got["tokens"], clip.tokens) and len(clip.tokens) == 15
        assert np.array_equal(got["rotations"], clip.motion.rotations.astype(np.float32))
        assert (clip_info["prompt"], clip_info["seed"]) == (clip.prompt, clip.seed)


def test_concurrent_requests_are_batched_and_match_serial(tmp_path):
    prompts = ["a person walks", "a man jumps high", "someone waves both hands", "a dancer spins around",
               "a person sits down slowly", "a boxer throws punches"]
    opts = dict(seconds=1, sampling="sample", temperature=0.9, top_k=50)
    with start_client("--batch-size", "16") as c:
        c.call("load", timeout=60)
        serial = [c.wait(c.generate(p, out=tmp_path / "serial", seed=100 + i, **opts), timeout=60)
                  for i, p in enumerate(prompts)]
        ids = [c.generate(p, out=tmp_path / "together", seed=100 + i, **opts) for i, p in enumerate(prompts)]
        together = [c.wait(rid, timeout=60) for rid in ids]
    assert all(r["timing"]["batch_rows"] == 1 for r in serial)
    assert max(r["timing"]["batch_rows"] for r in together) >= 3     # they really shared decoding passes
    for s, t in zip(serial, together):
        a, b = _arrays(s["paths"][0]), _arrays(t["paths"][0])
        for key in a:
            assert np.array_equal(a[key], b[key]), key


def test_cancel_running_and_queued(tmp_path):
    with start_client("--batch-size", "64") as c:
        c.call("load", timeout=60)
        long = c.generate(prompts=["a person walks in a circle"] * 32, variations=2, out=tmp_path, seconds=10,
                          sampling="sample", temperature=1.0, seed=1, name="long")
        queued = c.generate("a person jumps", out=tmp_path, seconds=2, name="queued")   # other duration: not batched
        deadline = time.monotonic() + 60
        decoding = None
        while decoding is None and time.monotonic() < deadline:
            for e in c.poll():
                if e["id"] == long and e.get("phase") == "decoding":
                    decoding = e
            time.sleep(0.01)
        assert decoding is not None and decoding["step"] < decoding["total"]
        ack_q = c.call("cancel", target=queued, timeout=10)
        assert ack_q["state"] == "queued"
        t0 = time.monotonic()
        ack = c.call("cancel", target=long, timeout=10)
        assert ack["state"] == "running"
        with pytest.raises(BackendError) as err:
            c.wait(long, timeout=30)
        took = time.monotonic() - t0
        with pytest.raises(BackendError) as err_q:
            c.wait(queued, timeout=10)
        assert err.value.code == "cancelled" and err_q.value.code == "cancelled"
        # the worker noticed the cancel at the first step boundary after it arrived
        assert err.value.event["steps_after_cancel"] <= 1
        assert took < 30, took
        assert not list(tmp_path.glob("long_*")) and not list(tmp_path.glob("queued_*"))
        assert c.call("status", timeout=10)["running"] == []
        with pytest.raises(BackendError) as gone:
            c.call("cancel", target=long, timeout=10)
        assert gone.value.code == "not_found"
        ok = c.wait(c.generate("a person jumps", out=tmp_path, seconds=1), timeout=60)   # still serving
        assert ok["event"] == "result"


CLIENT_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from blender_addon.client import BackendClient
c = BackendClient(sys.executable, cwd=sys.argv[1], model_dir=sys.argv[2], device="cpu")
print(c.call("hello", timeout=60)["pid"], flush=True)
c.generate(prompts=["a person walks"] * 16, out=sys.argv[3], seconds=10)
time.sleep(120)
"""


def test_killing_the_client_stops_the_server(tmp_path):
    client = subprocess.Popen([PY, "-c", CLIENT_SCRIPT, str(ROOT), str(tiny_model()), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(client.stdout.readline())
        assert pid_alive(server_pid)
        time.sleep(1.0)
        client.kill()
        client.wait(10)
        deadline = time.monotonic() + 20
        while pid_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(server_pid), "the server outlived its client"
    finally:
        client.kill()
        client.wait(10)


def test_server_killed_while_generating_is_reported_and_restarted(tmp_path):
    with start_client() as c:
        rid = c.generate(prompts=["a person walks"] * 16, variations=4, out=tmp_path, seconds=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(e.get("phase") == "decoding" for e in c.poll()):
            time.sleep(0.01)
        old = c.pid
        os.kill(old, signal.SIGKILL)
        with pytest.raises(BackendCrashed) as err:
            c.wait(rid, timeout=30)
        assert err.value.code == "backend_crashed"
        assert "exit code -9" in err.value.message and "serve: ready" in err.value.message   # its stderr tail
        with pytest.raises(BackendCrashed):
            c.request("status")
        c.restart()
        assert c.pid != old and c.call("hello", timeout=60)["pid"] == c.pid
        assert c.wait(c.generate("a person waves", out=tmp_path, seconds=1), timeout=60)["event"] == "result"


def test_out_of_memory_halves_the_batch_then_fails_cleanly(tmp_path):
    # ~150 text positions make the prefill logits 150 x 64001 floats (38 MB) per row: 16 rows do not fit in
    # 300 MB of working memory, a few rows do. The limit is a real allocator limit (RLIMIT_AS on CPU).
    prompt = " ".join(["a person walks forward, turns left and waves"] * 20)
    prompts = [prompt + f" take {i}" for i in range(16)]
    with start_client("--batch-size", "16", "--memory-limit-mb", "300") as c:
        c.call("load", timeout=60)
        res = c.wait(c.generate(prompts=prompts, out=tmp_path / "a", seconds=1), timeout=120)
        status = c.call("status", timeout=10)
        assert status["oom_retries"] >= 1
        assert res["timing"]["batch_rows"] < 16
    with start_client("--batch-size", "16") as c:
        ref = c.wait(c.generate(prompts=prompts, out=tmp_path / "b", seconds=1), timeout=120)
        assert ref["timing"]["batch_rows"] == 16
    for a, b in zip(res["paths"], ref["paths"]):
        assert np.array_equal(_arrays(a)["tokens"], _arrays(b)["tokens"])
    with start_client("--memory-limit-mb", "10") as c:
        c.call("load", timeout=60)
        with pytest.raises(BackendError) as err:
            c.wait(c.generate(prompt=prompt, out=tmp_path / "c", seconds=1), timeout=120)
        assert err.value.code == "out_of_memory"
        assert c.call("status", timeout=10)["loaded"] is True      # the service stays up


def test_idle_unload_and_reload(tmp_path):
    with start_client("--idle-unload-minutes", "0.01") as c:
        c.call("load", timeout=60)
        assert c.call("status", timeout=10)["loaded"] is True
        deadline = time.monotonic() + 10
        while c.call("status", timeout=10)["loaded"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.call("status", timeout=10)["loaded"] is False
        assert c.wait(c.generate("a person walks", out=tmp_path, seconds=1), timeout=60)["event"] == "result"


def test_shutdown_request_ends_the_process():
    c = start_client()
    try:
        assert c.call("shutdown", timeout=30)["event"] == "bye"
        assert c.proc.wait(20) == 0
    finally:
        c.close()


def _serve(*args):
    return subprocess.run([PY, "-m", "backend", "serve", "--model-dir", str(tiny_model()), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, input="")


def test_listen_needs_a_token_and_a_loopback_address():
    no_token = _serve("--listen", "127.0.0.1:0")
    assert no_token.returncode == 2 and "needs a token (MOTIONMILL_TOKEN or --token-file)" in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1
    public = _serve("--listen", "0.0.0.0:8765", "--token", "t" * 16)
    assert public.returncode == 2 and "only loopback" in public.stderr


def test_listen_accepts_only_the_right_token():
    lines = []
    with start_client("--listen", "127.0.0.1:0", log=lines.append,
                      env={**os.environ, "MOTIONMILL_TOKEN": "s3cret-s3cret-s3cret"}) as c:
        c.call("hello", timeout=60)
        port = None
        deadline = time.monotonic() + 10
        while port is None and time.monotonic() < deadline:
            port = next((int(m.group(1)) for m in map(re.compile(r"listening on 127\.0\.0\.1:(\d+)").search, lines) if m), None)
            time.sleep(0.05)
        assert port

        def talk(*reqs):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                f = s.makefile("rwb")
                out = []
                for r in reqs:
                    try:
                        f.write(r.encode() + b"\n")
                        f.flush()
                        out.append(f.readline())
                    except (ConnectionResetError, BrokenPipeError):  # written after the server closed: TCP resets
                        out.append(b"")
                return out

        bad = talk('{"id": 1, "op": "hello", "token": "wrong"}', '{"id": 2, "op": "status"}')
        assert b'"unauthorized"' in bad[0] and bad[1] == b""        # refused and closed
        good = talk('{"id": 1, "op": "hello", "token": "s3cret-s3cret-s3cret"}', '{"id": 2, "op": "status"}')
        assert b'"event":"hello"' in good[0] and b'"event":"status"' in good[1]

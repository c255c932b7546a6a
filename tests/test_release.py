"""The release files as published: training snapshots with DeepSpeed optimizer state, copies named .zip (torch's
format or a plain archive), the reference's HF-cache text encoder, broken files and hostile pickles. Each stand-in is
the tiny conformance model saved that way (tests/standins.py): it loads and reproduces the reference's tokens, or it
is refused with one line."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import BACKEND_PYTHON, ROOT
from models.checkpoint import CheckpointError, load_state_dict, read_checkpoint
from models.loader import check_model_dir, load_model
from standins import (TINY, hf_cache_text_encoder, model_dir_config, save_t2m_training, save_tokenizer_training,
                      zip_archive)

EXPECTED = TINY.parent / "expected"


def backend(*args, timeout=300):
    return subprocess.run([BACKEND_PYTHON, "-m", "backend", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def one_line(run):
    """The CLI's answer to bad input: exit 2, one `error:` line, no traceback."""
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "\x1b[" not in run.stderr, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def release_shaped_dir(root):
    """A model directory of release-shaped stand-ins: the DeepSpeed-laden t2m named t2m_7B_all.zip, the tokenizer
    with its optimizer named fsq.zip (both torch's zip format), flan-t5-xl in the reference's HF-cache layout."""
    root.mkdir()
    save_t2m_training(root / "t2m_7B_all.zip")
    save_tokenizer_training(root / "fsq.zip")
    snap = hf_cache_text_encoder(root / "checkpoints")
    for name in ("mean.npy", "std.npy"):
        shutil.copy(TINY / name, root / name)
    return model_dir_config(root, t2m="t2m_7B_all.zip", tokenizer="fsq.zip", text_encoder=os.path.relpath(snap, root))


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return release_shaped_dir(tmp_path_factory.mktemp("release") / "model")


def test_release_shaped_files_generate_the_reference_tokens(release_dir, tmp_path):
    prompts = json.loads((EXPECTED / "index.json").read_text())[:2]
    args = [a for p in prompts for a in ("--prompt", p["prompt"])]
    run = backend("generate", "--model-dir", release_dir, *args, "--sampling", "greedy", "--max-tokens", 50,
                  "--device", "cpu", "--dtype", "float32", "--out", tmp_path, "--quiet")
    assert run.returncode == 0, run.stderr
    for i, p in enumerate(prompts):
        got = np.load(tmp_path / f"{i:03d}.npz")["tokens"]
        assert got.tolist() == np.load(EXPECTED / p["file"])["tokens"].tolist(), p["prompt"]
    assert "deepspeed" not in sys.modules  # nothing of it was ever importable, here or in the backend


def test_deepspeed_objects_are_read_as_inert_data(release_dir):
    blob = read_checkpoint(release_dir / "t2m_7B_all.zip")
    scaler = blob["optimizer"]["loss_scaler"]
    assert type(scaler).__module__ == "deepspeed.runtime.fp16.loss_scaler" and scaler.state["cur_scale"] == 65536.0
    assert blob["optimizer"]["zero_stage"].args == (2,)
    assert load_state_dict(release_dir / "fsq.zip", "net")  # the tokenizer's plain AdamW/MultiStepLR state


def test_doctor_opens_the_checkpoints_before_it_says_complete(release_dir, tmp_path):
    run = backend("doctor", "--model-dir", release_dir, "--json")
    report = json.loads(run.stdout)
    assert report["model"]["complete"] is True, report["model"]
    broken = tmp_path / "model"
    shutil.copytree(release_dir, broken, symlinks=True)
    data = (broken / "t2m_7B_all.zip").read_bytes()
    (broken / "t2m_7B_all.zip").write_bytes(data[: len(data) // 2])
    run = backend("doctor", "--model-dir", broken, "--json")
    model = json.loads(run.stdout)["model"]
    assert run.returncode == 1 and model["complete"] is False
    assert "t2m_7B_all.zip: unreadable or truncated checkpoint" in model["missing"][0]


def test_a_folder_claiming_a_preset_names_the_size_it_really_holds(release_dir, tmp_path):
    from models.manifest import release_config, write_config
    folder = tmp_path / "claims-7b"
    shutil.copytree(release_dir, folder, symlinks=True)
    write_config(release_config(folder, "7B", {"t2m": "t2m_7B_all.zip", "tokenizer": "fsq.zip",
                                              "text_encoder": json.loads((release_dir / "config.json").read_text())
                                              ["text_encoder"]["dir"]}))
    with pytest.raises(CheckpointError) as err:
        check_model_dir(folder)
    assert str(err.value) == (f"t2m_7B_all.zip has 2 layers of width 64; the 7B preset needs 36 of width 4096 "
                              f"({folder / 't2m_7B_all.zip'})")


@pytest.mark.parametrize("damage", ["empty", "truncated", "archive"])
def test_broken_decoder_files_are_one_line_and_t5_is_not_loaded_first(release_dir, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(release_dir, folder, symlinks=True)
    t2m = folder / "t2m_7B_all.zip"
    if damage == "empty":
        t2m.write_bytes(b"")
    elif damage == "truncated":
        t2m.write_bytes(t2m.read_bytes()[:100_000])
    else:  # a plain zip archive holding the checkpoint under another name, named as the checkpoint
        shutil.move(t2m, tmp_path / "net_last.pth")
        zip_archive(t2m, {"t2m_7B_all/net_last.pth": tmp_path / "net_last.pth"})
    phases = []
    with pytest.raises(CheckpointError) as err:
        load_model(folder, device="cpu", progress=phases.append)
    assert phases == []  # refused before "loading text encoder"
    msg = str(err.value)
    assert msg.startswith(str(t2m)) and "\n" not in msg
    assert {"empty": "empty file (0 bytes)", "truncated": "unreadable or truncated checkpoint",
            "archive": "a zip archive (holding t2m_7B_all/net_last.pth), not a checkpoint"}[damage] in msg
    line = one_line(backend("generate", "--model-dir", folder, "--prompt", "walk", "--out", tmp_path / "out"))
    assert str(t2m) in line


def test_broken_text_encoder_weights_are_one_line(release_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(release_dir, folder, symlinks=False)  # real files: the shard can be damaged here alone
    te = folder / json.loads((folder / "config.json").read_text())["text_encoder"]["dir"]
    shard = te / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])
    line = one_line(backend("generate", "--model-dir", folder, "--prompt", "walk", "--out", tmp_path / "out"))
    assert "model.safetensors: unreadable safetensors file" in line


class Hostile:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint does to run code when it is unpickled."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func, shown", [(os.system, "os.system"), (subprocess.call, "subprocess.call"),
                                         (eval, "builtins.eval")])
def test_hostile_pickles_are_refused_and_run_nothing(tmp_path, func, shown):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    arg = {"subprocess.call": (["touch", str(marker)],), "builtins.eval": (f"open({str(marker)!r}, 'w')",)}.get(
        shown, (cmd,))
    trans = torch.load(TINY / "t2m.pth", weights_only=True)["trans"]
    path = tmp_path / "motionmillion_7B_all.pth"
    torch.save({"trans": trans, "optimizer": Hostile(func, *arg)}, path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path, "trans")
    assert str(err.value) == (f"{path}: holds a pickled object of {shown}; refused (only tensors and inert training "
                              "state are read)")
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == before  # no trace
    # the training-state allowance is by package: a hostile object cannot pass as one by living inside a tensor dict
    torch.save({"trans": {**trans, "x": Hostile(func, *arg)}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_state_dict(path, "trans")
    assert not marker.exists()


def test_loads_at_the_same_time_do_not_interfere(release_dir):
    """torch's safe-globals list is process-wide: two threads loading DeepSpeed-laden files at once both succeed."""
    errors, done = [], []

    def load():
        try:
            for _ in range(5):
                done.append(len(load_state_dict(release_dir / "t2m_7B_all.zip", "trans")))
        except Exception as err:  # noqa: BLE001 (any failure is the test's)
            errors.append(err)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and done == [19] * 15
    from models.checkpoint import InertObject
    left = [g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()]
    assert not [g for g in left if isinstance(g, type) and issubclass(g, InertObject)]  # nothing left allow-listed


PEAK_RSS = """
import resource, sys
sys.path.insert(0, {root!r})
from models.checkpoint import load_state_dict
state = load_state_dict(sys.argv[1], "trans")
total = sum(float(v.float().sum()) for v in state.values())  # every weight read, as loading does
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_a_gigabyte_of_optimizer_state_is_never_read(tmp_path):
    """A t2m file whose optimizer entry holds 1.2 GB loads with peak RSS within 300 MB of the same weights alone."""
    heavy = save_t2m_training(tmp_path / "heavy.pth", optimizer_numel=100_000_000)  # 3 × 400 MB of fp32
    assert heavy.stat().st_size > 1.2e9
    alone = tmp_path / "alone.pth"
    torch.save({"trans": torch.load(TINY / "t2m.pth", weights_only=True)["trans"]}, alone)
    script = PEAK_RSS.format(root=str(ROOT))
    peaks = {}
    for name, path in (("alone", alone), ("heavy", heavy)):
        run = subprocess.run([BACKEND_PYTHON, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        peaks[name] = int(run.stdout.split()[-1])
    assert peaks["heavy"] - peaks["alone"] < 300, peaks


def test_generate_without_length_options_lets_the_model_run_past_the_reference_cap(tmp_path):
    run = backend("generate", "--model-dir", TINY, "--prompt", "Raise both hands", "--device", "cpu", "--out",
                  tmp_path, "--quiet")
    assert run.returncode == 0, run.stderr
    tokens = np.load(tmp_path / "000.npz")["tokens"]
    assert 50 < len(tokens) <= 150


def test_pickle_protocol_of_the_stand_ins_is_what_torch_save_writes(release_dir):
    """The stand-ins exercise the same opcodes as the release (torch.save's default protocol 2: NEWOBJ, BUILD)."""
    import zipfile
    with zipfile.ZipFile(release_dir / "t2m_7B_all.zip") as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert data[:2] == b"\x80\x02" and pickle.NEWOBJ in data and pickle.BUILD in data


def test_serve_answers_a_refused_checkpoint_in_one_plain_line(release_dir, tmp_path):
    """The service's model_unavailable error names the file and the refused global, without ANSI codes."""
    sys.path.insert(0, str(ROOT))
    from blender_addon.client import BackendClient
    folder = tmp_path / "model"
    shutil.copytree(release_dir, folder, symlinks=True)
    trans = torch.load(TINY / "t2m.pth", weights_only=True)["trans"]
    torch.save({"trans": trans, "optimizer": Hostile(os.system, "true")}, folder / "t2m_7B_all.zip")
    with BackendClient(BACKEND_PYTHON, cwd=str(ROOT), model_dir=str(folder), device="cpu") as c:
        err = c.wait(c.generate("a person walks", out=tmp_path / "out"), timeout=120, raise_errors=False)
    assert err["event"] == "error" and err["code"] == "model_unavailable", err
    assert err["message"] == (f"cannot load the model: {folder / 't2m_7B_all.zip'}: holds a pickled object of "
                              "os.system; refused (only tensors and inert training state are read)")

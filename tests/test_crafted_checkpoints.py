"""Hostile input, second round (issue 24): checkpoints whose pickles use only globals torch allows, crafted so that
the allowed calls fail (TypeError, AttributeError, MemoryError) or allocate from a number alone (bytearray(2**62)).
Every one is refused with one line naming the file, by `generate`, `doctor`, the installer's search and `load`."""
import io
import json
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import ROOT
from models.checkpoint import CheckpointError, identify, read_checkpoint
from models.loader import load_model
from serve_helpers import tiny_model

PY = sys.executable
P2 = b"\x80\x02"  # pickle protocol 2, as torch.save writes
CRAFTED = {
    "ordereddict_of_an_int": P2 + b"ccollections\nOrderedDict\nK\x05\x85R.",
    "bytearray_2_62": P2 + b"c__builtin__\nbytearray\n\x8a\x08" + (2 ** 62).to_bytes(8, "little") + b"\x85R.",
    "set_of_a_list": P2 + b"c__builtin__\nset\n]]a\x85\x85R.",
    "size_of_a_str": P2 + b"ctorch\nSize\nX\x03\x00\x00\x00abc\x85R.",
    "parameter_of_an_int": P2 + b"ctorch._utils\n_rebuild_parameter_with_state\n(K\x01\x89}}X\x01\x00\x00\x00aK\x01stR.",
}


def crafted_checkpoint(path, pickle_bytes):
    """torch.save's zip format with `pickle_bytes` as its data.pkl."""
    buf = io.BytesIO()
    torch.save({}, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, pickle_bytes if info.filename.endswith("data.pkl") else src.read(info))
    return path


def refused_in_one_line(message, path):
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert "unreadable or truncated checkpoint" in message or "refused" in message or "must map names" in message


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_pickles_are_one_line_errors(tmp_path, name):
    path = crafted_checkpoint(tmp_path / f"{name}.pth", CRAFTED[name])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    refused_in_one_line(str(err.value), path)
    assert identify(path) == (None, None)  # the installer's search by content passes over it


def test_a_tensor_dict_with_a_non_string_name_is_one_line(tmp_path):
    path = tmp_path / "t2m.pth"
    torch.save({"trans": {1: torch.zeros(2)}}, path)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model(), folder)
    shutil.copy(path, folder / "t2m.pth")
    with pytest.raises(CheckpointError) as err:
        load_model(folder, device="cpu")
    refused_in_one_line(str(err.value), folder / "t2m.pth")


@pytest.fixture(scope="module")
def crafted_model(tmp_path_factory):
    """The tiny model with its t2m checkpoint replaced by a crafted pickle."""
    folder = tmp_path_factory.mktemp("crafted") / "model"
    shutil.copytree(tiny_model(), folder)
    crafted_checkpoint(folder / "t2m.pth", CRAFTED["ordereddict_of_an_int"])
    return folder


def test_generate_refuses_a_crafted_checkpoint_in_one_line(crafted_model, tmp_path):
    gen = subprocess.run([PY, "-m", "backend", "generate", "--model-dir", str(crafted_model), "--device", "cpu",
                          "--prompt", "a person walks", "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert gen.returncode == 2 and gen.stderr.startswith("error: ") and gen.stderr.count("\n") == 1, gen.stderr
    refused_in_one_line(gen.stderr.removeprefix("error: ").strip(), crafted_model / "t2m.pth")


def test_doctor_reports_a_crafted_checkpoint_in_one_line(crafted_model):
    doc = subprocess.run([PY, "-m", "backend", "doctor", "--model-dir", str(crafted_model), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in doc.stderr, doc.stderr
    model = json.loads(doc.stdout)["model"]
    assert model["complete"] is False and len(model["missing"]) == 1, model
    refused_in_one_line(model["missing"][0], crafted_model / "t2m.pth")

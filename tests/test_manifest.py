"""The model-directory manifest and the built-in description of the release folder."""
import json
import shutil

import pytest

from models.manifest import ModelDirError, load_config, write_config
from tests.conftest import shared_path


def test_tiny_manifest_round_trips(tmp_path):
    src = shared_path("conformance", "motionmillion-tiny", "model")
    cfg = load_config(src)
    assert cfg.tokenizer.levels == (8, 8, 8, 5, 5, 5) and cfg.t2m.n_head == 4 and cfg.frames_per_token == 2
    assert cfg.codebook_size == 64000 and cfg.end_token == 64000 and cfg.missing_files() == []
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    cfg.root = str(dst)
    write_config(cfg)
    again = load_config(dst)
    assert again.to_json() == cfg.to_json()
    # the keys of the shared manifest are kept
    assert set(json.load(open(src / "config.json"))) <= set(json.load(open(dst / "config.json")))


@pytest.mark.parametrize("size,layers,width", [("7B", 36, 4096), ("3B", 24, 3200)])
def test_a_bare_release_folder_is_recognised(tmp_path, size, layers, width):
    for name in ("fsq_net_6000000.pth", f"motionmillion_{size}_all.pth", "mean.npy", "std.npy"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "flan-t5-xl").mkdir()
    (tmp_path / "flan-t5-xl" / "config.json").write_text("{}")
    cfg = load_config(tmp_path)
    assert (cfg.t2m.n_layer, cfg.t2m.n_embd, cfg.t2m.n_head) == (layers, width, 32)
    assert cfg.tokenizer.levels == (8, 8, 8, 5, 5, 5) and cfg.text_encoder.dir == "flan-t5-xl"
    assert [role for role, _ in cfg.missing_files()] == ["text encoder weights"]


def test_malformed_manifests_are_one_line_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no config.json and no release checkpoint"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "motionmillion-modeldir/1", "t2m": {"n_layers": 2}}))
    with pytest.raises(ModelDirError, match=r"unknown keys \['n_layers'\]"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelDirError, match="format"):
        load_config(tmp_path)

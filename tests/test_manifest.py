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


@pytest.mark.parametrize("size", ["7B", "3B"])
def test_a_bare_release_folder_is_recognised_by_content(tmp_path, monkeypatch, size):
    """A folder of release files without config.json: the decoder's size comes from its tensor shapes (here the tiny
    model standing for `size`), whatever the files are called."""
    from models import manifest
    from standins import TINY, TINY_PRESET, save_t2m_training, save_tokenizer_training
    monkeypatch.setitem(manifest.PRESETS, size, {**manifest.PRESETS[size], **TINY_PRESET})
    save_t2m_training(tmp_path / f"t2m_{size}_all.zip", optimizer_numel=10)
    save_tokenizer_training(tmp_path / "fsq.zip")
    shutil.copytree(TINY / "text_encoder", tmp_path / "flan-t5-xl")
    for name in ("mean.npy", "std.npy"):
        shutil.copy(TINY / name, tmp_path / name)
    cfg = load_config(tmp_path)
    assert (cfg.t2m.n_layer, cfg.t2m.n_embd, cfg.t2m.n_head, cfg.t2m.preset) == (2, 64, 4, size)
    assert (cfg.t2m.file, cfg.tokenizer.file, cfg.text_encoder.dir) == (f"t2m_{size}_all.zip", "fsq.zip", "flan-t5-xl")
    assert cfg.missing_files() == []


def test_a_bare_folder_of_empty_or_foreign_files_is_no_release(tmp_path):
    for name in ("fsq_net_6000000.pth", "motionmillion_7B_all.pth", "mean.npy", "std.npy"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ModelDirError, match="no config.json and no text-to-motion checkpoint"):
        load_config(tmp_path)


def test_malformed_manifests_are_one_line_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no config.json and no text-to-motion checkpoint"):
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

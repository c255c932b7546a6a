import shutil

import numpy as np
import pytest

from conftest import shared_path
from retarget.amass import load_amass
from retarget.bvh import read_bvh, write_bvh
from retarget.formats import load_any
from retarget.interchange import load_motion
from retarget.motion import MotionError
from retarget.motion272 import features_to_motion


def same(a, b):
    return (a.joint_names == b.joint_names and a.fps == b.fps and np.array_equal(a.rotations, b.rotations)
            and np.array_equal(a.translation, b.translation))


def test_dispatch_on_the_real_files(tmp_path):
    interchange = shared_path("data", "motion272", "amass_000000_motion.npz")
    amass = shared_path("data", "amass", "amass_test_smplh.npz")
    features = shared_path("data", "motion272", "amass_000000.npy")
    bvh = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    assert same(load_any(interchange), load_motion(interchange))
    assert same(load_any(amass), load_amass(amass))
    assert same(load_any(features), features_to_motion(np.load(features)))
    assert same(load_any(bvh), read_bvh(bvh))


def test_content_wins_over_extension(tmp_path):
    bvh = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    shutil.copy(bvh, tmp_path / "clip.txt")
    shutil.copy(shared_path("data", "motion272", "amass_000000.npy"), tmp_path / "features.bin")
    assert same(load_any(tmp_path / "clip.txt"), read_bvh(bvh))
    assert load_any(tmp_path / "features.bin").num_frames == 1287


def test_bvh_options_pass_through(tmp_path):
    m = features_to_motion(np.load(shared_path("data", "motion272", "amass_000000.npy"))[:10])
    write_bvh(tmp_path / "a.bvh", m)
    assert np.allclose(load_any(tmp_path / "a.bvh", bvh_scale=0.5).translation, m.translation * 0.5)


def test_unknown_files_say_what_is_accepted(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    np.save(tmp_path / "other.npy", np.zeros((10, 263)))
    (tmp_path / "notes.txt").write_text("hello")
    for name, message in (("other.npz", r"keys \['a'\] is not a motion"), ("other.npy", r"shape \(10, 263\) is not a motion"),
                          ("notes.txt", "unrecognised motion file"), ("missing.bvh", "no such file")):
        with pytest.raises(MotionError, match=message) as e:
            load_any(tmp_path / name)
        assert "\n" not in str(e.value)
        if name != "missing.bvh":
            assert "AMASS .npz" in str(e.value) and ".bvh" in str(e.value)

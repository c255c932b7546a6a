
import numpy as np
import pytest

from conftest import shared_path
from retarget.interchange import load_interchange, load_motion, save_motion
from retarget.motion import MotionError
from retarget.motion272 import features_to_motion


@pytest.fixture(scope="module")
def real_path():
    return shared_path("data", "motion272", "amass_000000_motion.npz")


def test_load_real_interchange_file(real_path):
    m, extras = load_interchange(real_path)
    ref = np.load(real_path)
    assert m.rotations.shape == (1287, 22, 3, 3) and m.fps == 30.0
    assert np.array_equal(m.rotations, ref["rotations"].astype(np.float64))
    assert extras["features"].shape == (1287, 272) and extras["joints"].shape == (1287, 22, 3)
    # The file's rotations are the decoded features.
    assert np.abs(features_to_motion(extras["features"]).rotations - m.rotations).max() < 1e-6


def test_save_load_round_trip_with_extras(real_path, tmp_path):
    m, extras = load_interchange(real_path)
    out = tmp_path / "clip.npz"
    save_motion(out, m, features=extras["features"], tokens=np.arange(5), prompt="a person walks", seed=7, model="7B")
    back, got = load_interchange(out)
    assert np.array_equal(back.rotations, m.rotations) and np.array_equal(back.translation, m.translation)
    assert back.fps == 30.0 and got["prompt"] == "a person walks" and got["seed"] == 7 and got["model"] == "7B"
    assert np.array_equal(got["tokens"], np.arange(5))
    assert np.load(out)["rotations"].dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npz"]  # no temp file left behind


def test_failed_save_leaves_old_file_and_no_temp(real_path, tmp_path):
    m = load_motion(real_path)
    out = tmp_path / "clip.npz"
    save_motion(out, m)
    before = out.read_bytes()
    with pytest.raises(MotionError, match="extra 'bad'"):
        save_motion(out, m, bad={"not": "an array"})
    assert out.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_errors_are_one_clear_line(tmp_path):
    R, t = np.tile(np.eye(3), (4, 22, 1, 1)), np.zeros((4, 3))
    cases = [
        (dict(rotations=R, fps=30), "missing key\\(s\\) translation"),
        (dict(rotations=R[:, :21], translation=t, fps=30), "'rotations' must have shape"),
        (dict(rotations=R, translation=t[:3], fps=30), "'translation' must have shape \\(4, 3\\)"),
        (dict(rotations=R, translation=np.where(np.eye(4, 3) > 0, np.nan, t), fps=30), "'translation' has NaN"),
        (dict(rotations=R, translation=t, fps=0), "fps must be a positive"),
        (dict(rotations=R, translation=t, fps=30, features=np.zeros((3, 272))), "'features' must have shape"),
    ]
    for i, (arrays, message) in enumerate(cases):
        p = write(tmp_path / f"c{i}.npz", **arrays)
        with pytest.raises(MotionError, match=message) as e:
            load_motion(p)
        assert "\n" not in str(e.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MotionError, match="not a readable .npz"):
        load_motion(tmp_path / "junk.npz")
    with pytest.raises(MotionError, match="no such file"):
        load_motion(tmp_path / "missing.npz")

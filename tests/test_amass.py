import numpy as np
import pytest

from conftest import shared_path
from retarget import smpl
from retarget.amass import load_amass
from retarget.motion import MotionError
from retarget.motion272 import features_to_motion


@pytest.fixture(scope="module")
def amass_path():
    return shared_path("data", "amass", "amass_test_smplh.npz")


@pytest.fixture(scope="module")
def motion(amass_path):
    return load_amass(amass_path)


def test_shape_rate_and_y_up(motion):
    assert motion.rotations.shape == (2575, 22, 3, 3) and motion.translation.shape == (2575, 3)
    assert motion.fps == 120.0 and motion.joint_names == smpl.JOINT_NAMES
    _, joints = smpl.forward_kinematics(motion.rotations, motion.translation)
    lowest_foot = joints[:, [7, 8, 10, 11], 1].min(axis=1)
    assert abs(np.median(lowest_foot)) < 0.05                                   # on the floor, y = 0
    assert 0.8 < np.median(motion.translation[:, 1] - lowest_foot) < 1.0          # pelvis ~0.9 m above it
    assert (joints[:, 15, 1] > joints[:, 0, 1]).all()                             # head above pelvis


def test_same_capture_as_the_272_clip(motion):
    """amass_000000 is this capture at every second frame, turned to face +Z and floor-aligned by the
    reference: body rotations match, and root/pelvis differ by one yaw and one offset for the whole clip."""
    clip = features_to_motion(np.load(shared_path("data", "motion272", "amass_000000.npy")))
    ours = motion.rotations[::2][:clip.num_frames]
    assert np.abs(ours[:, 1:] - clip.rotations[:, 1:]).max() < 1e-5
    yaw = clip.rotations[:, 0] @ np.transpose(ours[:, 0], (0, 2, 1))
    assert np.abs(yaw - yaw[0]).max() < 1e-5
    assert np.allclose(yaw[0][1], [0, 1, 0], atol=1e-6)  # a turn about y only: our y is their y
    offset = clip.translation - motion.translation[::2][:clip.num_frames] @ yaw[0].T
    assert np.abs(offset - offset[0]).max() < 1e-5


def test_smplx_width_and_other_rate_key(amass_path, motion, tmp_path):
    data = dict(np.load(amass_path))
    poses = np.concatenate([data["poses"], np.zeros((len(data["poses"]), 9))], axis=1)  # 165 columns
    np.savez(tmp_path / "x.npz", poses=poses, trans=data["trans"], mocap_frame_rate=np.float64(60))
    m = load_amass(tmp_path / "x.npz")
    assert m.fps == 60.0 and np.array_equal(m.rotations, motion.rotations)
    assert m.resample(30).num_frames == 1288


@pytest.mark.parametrize("arrays,message", [
    (dict(trans=np.zeros((3, 3)), mocap_framerate=30.0), "missing poses"),
    (dict(poses=np.zeros((3, 156)), trans=np.zeros((3, 3))), "missing mocap_framerate or mocap_frame_rate"),
    (dict(poses=np.zeros((3, 100)), trans=np.zeros((3, 3)), mocap_framerate=30.0), r"'poses' must be \(frames, 66/72/156/165\)"),
    (dict(poses=np.zeros((3, 156)), trans=np.zeros((4, 3)), mocap_framerate=30.0), r"'trans' must have shape \(3, 3\)"),
    (dict(poses=np.full((3, 156), np.nan), trans=np.zeros((3, 3)), mocap_framerate=30.0), "NaN"),
    (dict(poses=np.zeros((3, 156)), trans=np.zeros((3, 3)), mocap_framerate=-1.0), "fps must be a positive"),
])
def test_bad_files_give_one_line_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(MotionError, match=message) as e:
        load_amass(tmp_path / "bad.npz")
    assert "\n" not in str(e.value)

"""272-feature decode/encode against the real AMASS clip and the reference's own conformance outputs."""
import numpy as np
import pytest

from conftest import shared_path
from retarget import smpl
from retarget.motion import Motion, MotionError
from retarget.motion272 import (HEADING, POSITIONS, ROOT_VEL, ROTATIONS, VELOCITIES, features_to_joints,
                                features_to_motion, motion_to_features)
from retarget.rotations import axis_angle_to_matrix, quaternion_to_matrix


@pytest.fixture(scope="module")
def clip():
    return np.load(shared_path("data", "motion272", "amass_000000.npy"))


def smpl85_rotations(smpl85):
    return axis_angle_to_matrix(smpl85[:, :66].reshape(len(smpl85), 22, 3))


def test_decoded_rotations_match_reference_smpl85(clip):
    smpl85 = np.load(shared_path("data", "motion272", "amass_000000_smpl85.npy"))
    m = features_to_motion(clip)
    assert m.rotations.shape == (1287, 22, 3, 3) and m.fps == 30
    assert np.abs(m.rotations - smpl85_rotations(smpl85)).max() < 1e-4
    # smpl85 stores SMPL's transl (not the pelvis) in the subject's frame: the difference is one constant vector.
    diff = m.translation - smpl85[:, 72:75]
    assert np.abs(diff - diff[0]).max() < 1e-4


def test_decoded_motion_matches_interchange_file(clip):
    ref = np.load(shared_path("data", "motion272", "amass_000000_motion.npz"))
    m = features_to_motion(clip)
    assert np.abs(m.rotations - ref["rotations"]).max() < 1e-6
    assert np.abs(m.translation - ref["translation"]).max() < 1e-6
    assert np.abs(features_to_joints(clip) - ref["joints"]).max() < 1e-6


def test_decoded_joints_match_subject_joints_up_to_placement(clip):
    # The SMPL-X joints file is not floor-aligned nor moved to the origin: one constant offset for all.
    subject = np.load(shared_path("data", "motion272", "amass_000000_joints.npy"))[:, :22]
    diff = features_to_joints(clip) - subject
    assert np.abs(diff - diff[0, 0]).max() < 1e-4


@pytest.mark.parametrize("name", [f"gen_{i:02d}.npz" for i in range(8)])
def test_conformance_generations_decode_like_reference(name):
    ref = np.load(shared_path("conformance", "motionmillion-tiny", "expected", name))
    m = features_to_motion(ref["features"])
    assert np.abs(m.rotations - smpl85_rotations(ref["smpl85"])).max() < 1e-4
    assert np.abs(m.translation - ref["smpl85"][:, 72:75]).max() < 1e-6
    assert np.abs(features_to_joints(ref["features"]) - ref["joints"]).max() < 1e-6


def test_reencoding_real_clip_reproduces_every_block(clip):
    m = features_to_motion(clip)
    again = motion_to_features(m, joints=features_to_joints(clip))
    for block in (ROOT_VEL, HEADING, POSITIONS, VELOCITIES, ROTATIONS):
        assert np.abs(again[:, block] - clip[:, block]).max() < 1e-6, block


def test_reencoding_with_neutral_body_matches_the_body_independent_blocks(clip):
    # The clip's positions came from the subject's body; forward kinematics uses the neutral offsets,
    # so only positions/velocities differ (by up to ~0.14 m on this subject).
    again = motion_to_features(features_to_motion(clip))
    for block in (ROOT_VEL, HEADING, ROTATIONS):
        assert np.abs(again[:, block] - clip[:, block]).max() < 1e-6, block
    assert np.abs(again[:, 9] - clip[:, 9]).max() < 1e-9  # pelvis height


def test_round_trip_real_clip(clip):
    m = features_to_motion(clip)
    back = features_to_motion(motion_to_features(m))
    assert np.abs(back.rotations - m.rotations).max() < 1e-6
    assert np.abs(back.translation - m.translation).max() < 1e-6


def random_motion(rng, T=40):
    q = rng.normal(size=(T, 22, 4))
    trans = np.cumsum(rng.normal(scale=0.02, size=(T, 3)), 0) + [3.0, 0.9, -2.0]
    return Motion(quaternion_to_matrix(q), trans, 30.0)


def test_round_trip_keeps_arbitrary_start_heading_and_position():
    m = random_motion(np.random.default_rng(0))
    back = features_to_motion(motion_to_features(m))
    assert np.abs(back.rotations - m.rotations).max() < 1e-9
    assert np.abs(back.translation - m.translation).max() < 1e-9


def test_canonical_encoding_starts_at_origin_facing_z_on_floor():
    m = random_motion(np.random.default_rng(1))
    f = motion_to_features(m, canonical=True)
    assert np.allclose(f[0, HEADING], [1, 0, 0, 0, 1, 0]) and np.allclose(f[0, ROOT_VEL], 0)
    joints = features_to_joints(f)
    assert abs(joints[..., 1].min()) < 1e-9
    # Same body motion: the relative pose of joints to the pelvis is only turned about y.
    _, orig = smpl.forward_kinematics(m.rotations, m.translation)
    rel_o, rel_c = orig - orig[:, :1], joints - joints[:, :1]
    assert np.allclose(np.linalg.norm(rel_o, axis=-1), np.linalg.norm(rel_c, axis=-1), atol=1e-9)
    assert np.allclose(rel_o[..., 1], rel_c[..., 1], atol=1e-9)


def test_bad_features_raise_one_line_errors():
    with pytest.raises(MotionError, match="272"):
        features_to_motion(np.zeros((10, 263)))
    bad = np.zeros((5, 272))
    bad[3, 100] = np.nan
    with pytest.raises(MotionError, match="frame 3"):
        features_to_motion(bad)
    m = Motion(np.tile(np.eye(3), (2, 3, 1, 1)), np.zeros((2, 3)), 30, ("a", "b", "c"), (-1, 0, 1), np.zeros((3, 3)))
    with pytest.raises(MotionError, match="22-joint"):
        motion_to_features(m)

"""The 272-dim MotionMillion / "272-dim Motion Representation" features <-> Motion on SMPL-22.

Layout per frame (J = 22, y up, metres, denormalised):
  [0:2]     root x/z velocity, turned into the PREVIOUS frame's heading frame (frame 0: used as is)
  [2:8]     heading change R_rel[t] = H[t] @ H[t-1].T as 6D (rows); frame 0 holds H[0] itself
  [8:74]    joint positions with the heading removed and the root's x/z subtracted (joint 0 y = pelvis height)
  [74:140]  joint velocities: positions[8:74][t] - positions[8:74][t-1], zero at frame 0
  [140:272] local joint rotations as 6D (first two ROWS); the root's has the heading removed: H[t] @ root[t]

H[t] is a yaw about +Y that turns the root's facing (its local +Z axis) onto world +Z.
Decoding accumulates H[t] = R_rel[t] @ H[t-1] with H[0] = R_rel[0]. The reference encoder writes
H[0] = identity and a zero root velocity at frame 0, i.e. every clip starts at the x/z origin facing +Z.
"""
import numpy as np

from . import smpl
from .motion import Motion, MotionError
from .rotations import matrix_to_rotation_6d, rotation_6d_to_matrix

NUM_FEATURES = 272
FPS = 30.0
J = smpl.NUM_JOINTS
ROOT_VEL = slice(0, 2)
HEADING = slice(2, 8)
POSITIONS = slice(8, 8 + 3 * J)
VELOCITIES = slice(8 + 3 * J, 8 + 6 * J)
ROTATIONS = slice(8 + 6 * J, 8 + 12 * J)
HEIGHT = 9  # joint 0's y in the positions block


def _check_features(features):
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[1] != NUM_FEATURES or f.shape[0] == 0:
        raise MotionError(f"272 features must have shape (frames, {NUM_FEATURES}), got {f.shape}")
    if not np.isfinite(f).all():
        bad = np.flatnonzero(~np.isfinite(f).all(axis=1))
        raise MotionError(f"272 features have NaN or infinite values at frame {int(bad[0])} ({len(bad)} frames in all)")
    return f


def accumulate_heading(relative):
    """(T,3,3) heading changes -> absolute headings H[t] = relative[t] @ H[t-1], H[0] = relative[0]."""
    H = np.empty_like(relative)
    H[0] = relative[0]
    for t in range(1, len(relative)):  # a 3x3 product per frame; inherently sequential
        H[t] = relative[t] @ H[t - 1]
    return H


def decode_heading(features):
    """(T,272) -> (T,3,3) absolute heading rotations H (world -> heading-free frame)."""
    f = _check_features(features)
    return accumulate_heading(rotation_6d_to_matrix(f[:, HEADING]))


def _root_xz(f, H):
    """Pelvis x/z: cumulative sum of root velocities turned back by the previous frame's heading."""
    vel = np.zeros((len(f), 3))
    vel[:, 0], vel[:, 2] = f[:, 0], f[:, 1]
    vel[1:] = np.einsum("tji,tj->ti", H[:-1], vel[1:])  # H[t-1].T @ v
    return np.cumsum(vel, axis=0)


def features_to_motion(features, fps=FPS):
    """(T,272) denormalised features -> Motion on SMPL-22: local rotations (root with heading) + pelvis position."""
    f = _check_features(features)
    H = decode_heading(f)
    rotations = rotation_6d_to_matrix(f[:, ROTATIONS].reshape(len(f), J, 6))
    rotations[:, 0] = np.transpose(H, (0, 2, 1)) @ rotations[:, 0]
    translation = _root_xz(f, H)
    translation[:, 1] = f[:, HEIGHT]
    return Motion(rotations, translation, fps)


def features_to_joints(features):
    """(T,272) -> (T,22,3) world joint positions from the positions block, heading and root x/z added back."""
    f = _check_features(features)
    H = decode_heading(f)
    local = f[:, POSITIONS].reshape(len(f), J, 3)
    joints = np.einsum("tji,tkj->tki", H, local)  # H[t].T @ p
    root = _root_xz(f, H)
    joints[:, :, 0] += root[:, None, 0]
    joints[:, :, 2] += root[:, None, 2]
    return joints


def yaw_matrix(angle):
    """Rotation by `angle` radians about +Y, (...,) -> (...,3,3)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(np.shape(angle) + (3, 3))


def facing_heading(root_rotations):
    """(T,3,3) root rotations -> H (T,3,3): the yaw that turns the root's local +Z (projected on the floor) onto +Z."""
    facing = np.arctan2(root_rotations[:, 0, 2], root_rotations[:, 2, 2])
    return yaw_matrix(-facing)


def canonicalize(motion, joints=None):
    """The motion turned and moved like the reference encoder does: frame 0 at the x/z origin facing +Z,
    floor (the lowest joint over the clip) at y = 0. Returns (motion, joints)."""
    if joints is None:
        _, joints = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    H0 = facing_heading(motion.rotations[:1, 0])[0]
    origin = np.array([motion.translation[0, 0], joints[..., 1].min(), motion.translation[0, 2]])
    rotations = motion.rotations.copy()
    rotations[:, 0] = H0 @ rotations[:, 0]
    translation = (motion.translation - origin) @ H0.T
    joints = (joints - origin) @ H0.T
    return Motion(rotations, translation, motion.fps, motion.joint_names, motion.parents, motion.offsets), joints


def motion_to_features(motion, joints=None, canonical=False):
    """Motion on SMPL-22 -> (T,272) features; the inverse of features_to_motion.

    Positions come from `joints` (T,22,3) when given (e.g. the subject's real body), else from forward
    kinematics on the motion's own offsets. With canonical=False the frame-0 heading and x/z position are
    stored in frame 0 ([2:8] = H[0], [0:2] = pelvis x/z), so features_to_motion gives the motion back
    exactly; with canonical=True the motion is first put at the origin facing +Z on the floor, as the
    reference encoder (and so the tokenizer's training data) has it.
    """
    if motion.rotations.shape[1] != J:
        raise MotionError(f"the 272 format is for the {J}-joint SMPL skeleton, this motion has {motion.rotations.shape[1]} joints")
    if joints is None:
        _, joints = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    joints = np.asarray(joints, np.float64)
    if joints.shape != (motion.num_frames, J, 3):
        raise MotionError(f"joints must have shape ({motion.num_frames}, {J}, 3), got {joints.shape}")
    if canonical:
        motion, joints = canonicalize(motion, joints)
    T, R, trans = motion.num_frames, motion.rotations, motion.translation
    H = facing_heading(R[:, 0])
    f = np.zeros((T, NUM_FEATURES))

    relative = H.copy()
    relative[1:] = H[1:] @ np.transpose(H[:-1], (0, 2, 1))
    f[:, HEADING] = matrix_to_rotation_6d(relative)

    root_vel = np.empty((T, 3))
    root_vel[0] = trans[0]
    root_vel[1:] = np.einsum("tij,tj->ti", H[:-1], trans[1:] - trans[:-1])
    f[:, ROOT_VEL] = root_vel[:, [0, 2]]

    local = joints.copy()
    local[:, :, 0] -= trans[:, None, 0]
    local[:, :, 2] -= trans[:, None, 2]
    local = np.einsum("tij,tkj->tki", H, local)
    f[:, POSITIONS] = local.reshape(T, -1)
    f[1:, VELOCITIES] = (local[1:] - local[:-1]).reshape(T - 1, -1)

    rot = R.copy()
    rot[:, 0] = H @ rot[:, 0]
    f[:, ROTATIONS] = matrix_to_rotation_6d(rot).reshape(T, -1)
    return f

"""AMASS-style SMPL / SMPL-H / SMPL-X .npz -> Motion on SMPL-22 (y up, metres, the capture's own fps).

AMASS files hold `poses` (T, 66 + more: the first 66 columns are the 22 body joints' axis-angle, root
first), `trans` (T,3), `mocap_framerate` (or `mocap_frame_rate`), z up. `betas` are ignored: the motion
is put on the neutral SMPL skeleton (smpl.REST_OFFSETS).

Where the pelvis is: SMPL rotates the body about its rest pelvis J0 and then adds `trans`, so in the
file's z-up world the pelvis is at trans + J0 (J0 in the body model's own coordinates, not turned by the
root rotation). We use J0 = smpl.REST_OFFSETS[0] (neutral body); the subject's J0 differs by ~1-2 cm.
Z up -> y up is a -90 degree turn about X, (x, y, z) -> (x, z, -y), applied to the world: the root
rotation and the pelvis position are turned by it, the other (local) rotations are unchanged.
"""
import numpy as np

from . import smpl
from .interchange import read_npz
from .motion import Motion, MotionError
from .rotations import axis_angle_to_matrix

Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
POSE_WIDTHS = {66: "SMPL body", 72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}
FRAMERATE_KEYS = ("mocap_framerate", "mocap_frame_rate")


def amass_to_motion(poses, trans, fps):
    """Arrays in AMASS form (z up, SMPL transl) -> Motion on SMPL-22, y up, translation = pelvis."""
    poses, trans = np.asarray(poses, np.float64), np.asarray(trans, np.float64)
    T = len(poses)
    rotations = axis_angle_to_matrix(poses[:, :66].reshape(T, 22, 3))
    rotations[:, 0] = Z_UP_TO_Y_UP @ rotations[:, 0]
    pelvis = (trans + smpl.REST_OFFSETS[0]) @ Z_UP_TO_Y_UP.T
    return Motion(rotations, pelvis, float(fps))


def load_amass(path, arrays=None):
    """An AMASS-style .npz -> Motion at the capture's frame rate (use Motion.resample for another). `arrays`: the
    file's arrays when the caller has read them already."""
    data = read_npz(path) if arrays is None else arrays
    missing = [k for k in ("poses", "trans") if k not in data]
    rate_key = next((k for k in FRAMERATE_KEYS if k in data), None)
    if rate_key is None:
        missing.append(" or ".join(FRAMERATE_KEYS))
    if missing:
        raise MotionError(f"{path}: not an AMASS motion: missing {', '.join(missing)}")
    poses, trans = data["poses"], data["trans"]
    if poses.ndim != 2 or poses.shape[1] not in POSE_WIDTHS:
        raise MotionError(f"{path}: 'poses' must be (frames, 66/72/156/165) axis-angle, got {poses.shape}")
    if trans.shape != (poses.shape[0], 3):
        raise MotionError(f"{path}: 'trans' must have shape ({poses.shape[0]}, 3), got {trans.shape}")
    if data[rate_key].size != 1:
        raise MotionError(f"{path}: '{rate_key}' must be one number, got shape {data[rate_key].shape}")
    try:
        return amass_to_motion(poses, trans, float(data[rate_key]))
    except MotionError as e:
        raise MotionError(f"{path}: {e}") from None

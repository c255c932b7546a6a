"""Control rigs (Rigify and others): from the deform bones' retargeted pose to the pose of the controls an animator
keys (numpy only; blender_addon/control_rig.py does the Blender side).

The retarget solves the deform skeleton (Rigify's DEF- bones) as it solves any rig. A control c that follows deform
bone d is then placed where it sits on d at rest: ``A_c = A_d @ rest_d^-1 @ rest_c`` in armature space (``A`` is
``pose_bone.matrix``, ``rest`` is ``bone.matrix_local``). Blender evaluates the rig with every keyed control held
there, and each control's channels come from its own and its parent's evaluated matrices (``local_channels``), so
the rig's own mechanism (MCH- chains, IK, switches) is what turns the keys back into the deform pose.

Presets (``presets/control_rigs/*.json``) hold the rig knowledge: how a rig is recognised, which bones deform, and
for each mode which control follows which deform bone, which keys it gets, and the IK/FK switches.
"""
import json
import pathlib

import numpy as np

from .rotations import matrix_to_quaternion, normalize
from .transfer import continuous_quaternions, pose_armature

PRESET_DIR = pathlib.Path(__file__).resolve().parent / "presets" / "control_rigs"
MODES = ("fk", "ik-legs", "ik")
MODE_LABELS = {"fk": "legs FK, arms FK", "ik-legs": "legs IK, arms FK", "ik": "legs IK, arms IK"}


def load_presets(directory=None):
    """The control-rig presets, as dicts (the built-in ones read once: the panel asks on every redraw)."""
    if directory is None:
        if not _BUILT_IN:
            _BUILT_IN.extend(load_presets(PRESET_DIR))
        return _BUILT_IN
    return [json.loads(p.read_text()) for p in sorted(pathlib.Path(directory).glob("*.json"))]


_BUILT_IN = []


def limb_uses_ik(limb, mode):
    """Whether a preset limb ({"kind": "leg"|"arm", ...}) is keyed on its IK controls in `mode`."""
    if mode not in MODES:
        raise ValueError(f"unknown controls mode {mode!r}; use one of {', '.join(MODES)}")
    return mode == "ik" or (mode == "ik-legs" and limb["kind"] == "leg")


def armature_pose(anim, skeleton, names):
    """{bone: (T,4,4) armature-space pose matrix} (what Blender shows as pose_bone.matrix) of a TargetAnimation on
    its skeleton, for the bones `names` (only they and their parents are posed)."""
    P = pose_armature(anim, skeleton, [skeleton.index(n) for n in names])
    out = {}
    for n in names:
        R, t = P[skeleton.index(n)]
        A = np.zeros(R.shape[:1] + (4, 4))
        A[:, :3, :3], A[:, :3, 3], A[:, 3, 3] = R, t, 1.0
        out[n] = A
    return out


def follow(A_follow, rest_follow, rest_control):
    """(T,4,4) pose of a control carried by a deform bone as at rest: A_follow @ rest_follow^-1 @ rest_control."""
    return A_follow @ (np.linalg.inv(rest_follow) @ rest_control)


def pole_positions(top, mid, end, rigid, distance, straight=0.002):
    """(T,3) IK pole positions in the chain's bend plane: `distance` from the middle joint, on the side it bends to.

    top/mid/end: (T,3) joint positions (hip, knee, ankle); rigid: (T,3) the pole carried by the top bone as at rest,
    whose side of the chain takes over, smoothly, as the chain straightens (below `straight` x its length the bend
    plane is not defined)."""
    axis = normalize(end - top)
    def off_axis(p):
        v = p - top
        return v - np.sum(v * axis, -1, keepdims=True) * axis
    bend, carried = off_axis(mid), normalize(off_axis(rigid))
    length = np.linalg.norm(mid - top, axis=-1, keepdims=True) + np.linalg.norm(end - mid, axis=-1, keepdims=True)
    return mid + distance * normalize(bend + straight * length * carried)


def ground_root(pelvis, left_hip, right_hip, rest_root, rest_pelvis, rest_left_hip, rest_right_hip, up=2):
    """(T,4,4) a root control under the body: the pelvis's ground position and the hips' heading (about `up`),
    relative to where they are at rest. All points (T,3) / (3,) in armature space."""
    def heading(l, r):
        side = l - r
        return np.arctan2(side[..., 1], side[..., 0])
    yaw = heading(left_hip, right_hip) - heading(rest_left_hip, rest_right_hip)
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.zeros(yaw.shape + (4, 4))
    turn[..., 0, 0], turn[..., 0, 1], turn[..., 1, 0], turn[..., 1, 1] = c, -s, s, c
    turn[..., 2, 2] = turn[..., 3, 3] = 1.0
    ground = pelvis.copy()
    ground[..., up] = rest_pelvis[up]
    turn[..., :3, 3] = ground - np.einsum("...ij,j->...i", turn[..., :3, :3], rest_pelvis)
    return turn @ rest_root


def local_channels(final, rest, parent_final=None, parent_rest=None, local_location=True):
    """pose_bone.rotation_quaternion (T,4, sign-continuous) and .location (T,3) that give a bone the armature-space
    matrix `final` (T,4,4) under a parent evaluated at `parent_final` (T,4,4; None for a bone without parent).

    Blender: final = parent_final @ parent_rest^-1 @ rest @ basis, for a bone that inherits rotation and scale with
    unit scales (control rigs' controls do). The location is along the bone's own rest axes; with the bone's Local
    Location off (bone.use_local_location, Rigify's IK hands and feet) along its parent's posed axes instead, or the
    armature's for a bone without parent."""
    offset = rest if parent_final is None else parent_final @ (np.linalg.inv(parent_rest) @ rest)
    R = np.swapaxes(offset[..., :3, :3], -1, -2) @ final[..., :3, :3]
    R = R / np.linalg.norm(R, axis=-2, keepdims=True)
    if local_location:
        axes = offset[..., :3, :3]
    elif parent_final is None:
        axes = np.broadcast_to(np.eye(3), offset.shape[:-2] + (3, 3))
    else:
        axes = parent_final[..., :3, :3] / np.linalg.norm(parent_final[..., :3, :3], axis=-2, keepdims=True)
    move = final[..., :3, 3] - offset[..., :3, 3]
    location = np.einsum("...ij,...j->...i", np.linalg.inv(axes), move)
    return continuous_quaternions(matrix_to_quaternion(R)), location

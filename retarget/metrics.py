"""Motion-quality metrics on joint positions (numpy only), for tests and benchmarks.

Public API (positions are (T, J, 3) world metres with z up unless `up` says otherwise)
----------
``limb_direction_error(src_pos, src_roles, tgt_pos, tgt_roles, limbs=LIMBS) -> (T, L) degrees``
    angle between corresponding limb directions, each expressed in its own body's hips-and-neck frame.
``head_rotation_error(src, tgt) -> (T,) degrees``
    how far the head's turn from its rest, against the body, differs between the two bodies.
``foot_skate(points, fps, floor, clearances, height=0.05) -> m/s``
    mean ground-plane speed of foot points while planted (height above the floor, minus the point's rest
    clearance, below `height` at both ends of the frame step).
``ground_penetration(points, floor, clearances) -> metres`` deepest point below the floor (0 when none).
``jitter(positions, fps) -> m/s^2`` mean acceleration magnitude.
``bone_length_error(positions, pairs) -> relative`` largest |length / first-frame length - 1|.
``planar_displacement(positions, index) -> (T, 2)`` ground-plane displacement of one joint from frame 0.
``role_indices(skeleton, mapping) -> {role: bone index}``
``source_world(motion) -> (skeleton, mapping, heads)`` a source motion's joints by forward kinematics on its
    own skeleton, in Blender's z-up world, with the mapping of that skeleton.
``source_world_rotations(motion) -> (T,J,3,3)`` its joints' world orientations, z up (rest: world_rest_rotations).
``rig_foot_skate(skeleton, mapping, heads, fps) -> m/s`` foot_skate of a rig's ankle and toe heads, floor
    estimated as the reference does, planted height scaled to the leg.
``rig_ground_penetration(skeleton, mapping, rotations, heads) -> metres`` deepest foot point (transfer.foot_points:
    ankle, ball and the foot's end) below the rig's rest floor, from pose_world's rotations and heads.
"""
import numpy as np

from . import smpl
from .mapping import auto_map
from .skeleton import Skeleton
from .feet import REFERENCE_LEG
from .transfer import _body_frame as facing, estimate_floor, foot_points, leg_length, point_positions, world_deltas

LIMBS = tuple((f"{s}_{a}", f"{s}_{b}") for s in ("left", "right") for a, b in
              (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"))) + \
    (("left_collar", "left_shoulder"), ("right_collar", "right_shoulder"))


def body_frames(positions, roles, up=2):
    """(T,3,3) rotation whose columns are left, up, forward of the hips-and-neck frame."""
    p = positions
    upv = p[:, roles["neck"]] - p[:, roles["pelvis"]]
    upv /= np.linalg.norm(upv, axis=-1, keepdims=True)
    left = p[:, roles["left_hip"]] - p[:, roles["right_hip"]]
    left = left - np.sum(left * upv, -1, keepdims=True) * upv
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    return np.stack([left, upv, np.cross(left, upv)], -1)


def limb_direction_error(src_pos, src_roles, tgt_pos, tgt_roles, limbs=LIMBS):
    out = []
    Fs, Ft = body_frames(src_pos, src_roles), body_frames(tgt_pos, tgt_roles)
    for a, b in limbs:
        if not all(r in src_roles and r in tgt_roles for r in (a, b)):
            continue
        ds = src_pos[:, src_roles[b]] - src_pos[:, src_roles[a]]
        dt = tgt_pos[:, tgt_roles[b]] - tgt_pos[:, tgt_roles[a]]
        ls = np.einsum("tji,tj->ti", Fs, ds)
        lt = np.einsum("tji,tj->ti", Ft, dt)
        c = np.sum(ls * lt, -1) / (np.linalg.norm(ls, axis=-1) * np.linalg.norm(lt, axis=-1))
        out.append(np.degrees(np.arccos(np.clip(c, -1, 1))))
    return np.stack(out, 1)


def head_rotation_error(src, tgt):
    """(T,) degrees between how each body's head turned from its rest, the source's turned to face as the target faces
    (the facing of their rest poses, as the retarget aligns them).

    src, tgt: (rotations (T,J,3,3) world, roles, rest rotations (J,3,3), rest positions (J,3)), z up. Not the
    neck -> head direction: SMPL's head joint sits mid-skull, 38 degrees forward of its neck joint, where a rig's
    head bone starts above its neck, so the same pose points the two differently."""
    (rs, sr, rs0, ps0), (rt, tr, rt0, pt0) = src, tgt
    C = facing(pt0, tr) @ facing(ps0, sr).T
    Ds = C @ rs[:, sr["head"]] @ rs0[sr["head"]].T @ C.T
    Dt = rt[:, tr["head"]] @ rt0[tr["head"]].T
    D = np.swapaxes(Ds, -1, -2) @ Dt
    return np.degrees(np.arccos(np.clip((np.trace(D, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def heights_above_floor(points, floor, clearances, up=2):
    return points[..., up] - floor - np.asarray(clearances)


def foot_skate(points, fps, floor, clearances, height=0.05, up=2):
    """Mean ground speed (m/s) of planted foot points (T,P,3); 0.0 when nothing is planted."""
    h = heights_above_floor(points, floor, clearances, up)
    planted = (h[1:] < height) & (h[:-1] < height)
    ground = [k for k in range(3) if k != up]
    v = np.linalg.norm(np.diff(points[..., ground], axis=0), axis=-1) * fps
    return float(v[planted].mean()) if planted.any() else 0.0


def ground_penetration(points, floor, clearances, up=2):
    h = heights_above_floor(points, floor, clearances, up)
    return float(max(0.0, -h.min()))


def jitter(positions, fps):
    acc = np.diff(positions, 2, axis=0) * fps * fps
    return float(np.linalg.norm(acc, axis=-1).mean()) if len(acc) else 0.0


def bone_length_error(positions, pairs):
    err = 0.0
    for a, b in pairs:
        L = np.linalg.norm(positions[:, b] - positions[:, a], axis=-1)
        if L[0] > 1e-9:
            err = max(err, float(np.abs(L / L[0] - 1).max()))
    return err


def planar_displacement(positions, index, up=2):
    ground = [k for k in range(3) if k != up]
    p = positions[:, index][:, ground]
    return p - p[0]


def role_indices(skeleton, mapping):
    return {role: skeleton.names.index(bone) for role, bone in mapping.roles.items()}


def source_world(motion):
    skeleton = Skeleton.from_motion(motion)
    _, heads = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    return skeleton, auto_map(skeleton), heads @ skeleton.object_rotation.T


def source_world_rotations(motion):
    """(T,J,3,3) a source motion's joint orientations in Blender's z-up world, as source_world places its joints: at
    rest, its skeleton's world_rest_rotations."""
    g_rot, _ = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    return Skeleton.from_motion(motion).object_rotation @ g_rot


def rig_foot_skate(skeleton, mapping, heads, fps):
    """foot_skate with "planted" scaled to the body: below 5 cm for a REFERENCE_LEG (0.85 m) leg, proportionally
    lower for a smaller one (a child-sized avatar's swinging foot is not planted at 4 cm), as the cleanup scales its
    contact heights."""
    roles = role_indices(skeleton, mapping)
    points, _ = foot_points(skeleton, roles, heads_only=True)
    flat = [p for side in points.values() for p in side]
    positions = point_positions(None, heads, flat)
    clearances = np.array([p[2] for p in flat])
    floor = estimate_floor((positions[..., 2] - clearances).min(1))
    height = 0.05 * leg_length(skeleton.world_heads, roles) / REFERENCE_LEG
    return foot_skate(positions, fps, floor, clearances, height)


def rig_ground_penetration(skeleton, mapping, rotations, heads):
    points, floor = foot_points(skeleton, role_indices(skeleton, mapping))
    flat = [p for side in points.values() for p in side]
    positions = point_positions(world_deltas(skeleton, rotations), heads, flat)
    return ground_penetration(positions, floor, [p[2] for p in flat])

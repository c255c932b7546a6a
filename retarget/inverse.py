"""The inverse of the retarget: a rig's posed bones back to an SMPL-22 Motion (numpy only).

``motion_from_pose(target, rotations, heads, fps, mapping=None) -> Motion``
    target: the rig's ``Skeleton``; rotations (T,B,3,3) and heads (T,B,3): its posed bones in the world (metres,
    z up), what ``transfer.pose_world`` returns and what Blender shows as ``obj.matrix_world @ pose_bone.matrix``
    (rotation part normalised). Only the mapped bones are read. Returns SMPL-22 local rotations and the pelvis path
    (y up, metres) at ``fps``, on the neutral SMPL offsets: the interchange a continuation starts from.

The maths undoes ``transfer.retarget`` with its own alignments (``transfer.role_alignments``): a mapped bone's world
delta is E_b = C E_src C^T A_r, so the SMPL joint's world delta is E_src = C^T E_b A_r^T C. An SMPL joint whose role
the rig does not map (a rig without collars or toes) keeps its parent's orientation. The pelvis path inverts the
retarget's leg-length scale (ground travel), its pelvis-height ratio and its floor: the rig's rest pelvis stands at the SMPL x/z origin, facing as the SMPL rest
body does, and the rig's rest floor is y = 0 (so ``retarget(..., anchor=(0, 0))`` puts a motion in this frame back
where the rig stood).
"""
import numpy as np

from . import smpl
from .mapping import auto_map
from .motion import Motion
from .skeleton import Skeleton
from .rotations import rotation_between
from .transfer import foot_points, leg_length, role_alignments, standing_height, world_deltas

ANCHOR = (0.0, 0.0)   # where the rig's rest pelvis stands in the SMPL frame (x, z): pass to retarget(anchor=...)


def smpl_rest_skeleton():
    """The neutral SMPL-22 rest skeleton in Blender's z-up world, as transfer.retarget sees a source."""
    rest = Motion(np.tile(np.eye(3), (1, smpl.NUM_JOINTS, 1, 1)), np.zeros((1, 3)), 30.0)
    return Skeleton.from_motion(rest)


def _T(a):
    return np.swapaxes(a, -1, -2)


def motion_from_pose(target, rotations, heads, fps, mapping=None):
    mapping = auto_map(target) if mapping is None else mapping
    mapping.validate(target)
    src = smpl_rest_skeleton()
    sr = {r: src.names.index(b) for r, b in auto_map(src).roles.items()}
    tr = {r: target.names.index(b) for r, b in mapping.roles.items()}
    C, A, order = role_alignments(src, sr, target, tr, mapping, neutral_head=True)
    Os = src.object_rotation                       # SMPL's y-up -> Blender's z-up
    rotations, heads = np.asarray(rotations, np.float64), np.asarray(heads, np.float64)
    T = rotations.shape[0]

    # ---- world rotations of the SMPL joints (y up), then local ones
    E = world_deltas(target, rotations)            # (T,B,3,3) rig world deltas from rest
    g = np.empty((T, smpl.NUM_JOINTS, 3, 3))
    for j, (name, p) in enumerate(zip(smpl.JOINT_NAMES, smpl.PARENTS)):
        if name in order:
            e_src = C.T @ E[:, tr[name]] @ A[name].T @ C    # the source joint's world delta, z up
            g[:, j] = Os.T @ e_src @ Os
        else:
            g[:, j] = g[:, p] if p >= 0 else np.eye(3)
    top = "neck" if "neck" in tr else "head"
    _keep_torso_lean(g, heads[:, tr[top]] - heads[:, tr["pelvis"]], C, Os, top)
    local = np.empty_like(g)
    for j, p in enumerate(smpl.PARENTS):
        local[:, j] = g[:, j] if p < 0 else _T(g[:, p]) @ g[:, j]

    # ---- pelvis path: the leg ratio and the floors undone
    Hs, Ht = src.world_heads, target.world_heads
    k = leg_length(Ht, tr) / leg_length(Hs, sr)
    _, s_floor = foot_points(src, sr, heads_only=True)
    _, t_floor = foot_points(target, tr)
    x = heads[:, tr["pelvis"]]
    ground = x - Ht[tr["pelvis"]]
    ground[:, 2] = 0.0
    pelvis = ground @ C / k                        # C^T applied to each row
    pelvis[:, 2] = (x[:, 2] - t_floor) * standing_height(Hs, sr, s_floor) / standing_height(Ht, tr, t_floor)
    return Motion(local, pelvis @ Os, float(fps))  # Os^T applied to each row: back to y up


SPINE = ("spine1", "spine2", "spine3")




def _keep_torso_lean(g, torso, C, Os, top):
    """Turn the SMPL spine joints together so that pelvis -> `top` points as the rig's does (torso (T,3), z up).

    The retarget does the same the other way (transfer._keep_torso_lean): spines of other proportions bend the same
    per-vertebra angles into another lean, and the lean is what is kept. Without this the SMPL neck leans as the
    rig's vertebrae add up on SMPL's spine, and every limb read in the body's frame tilts with it."""
    want = torso @ C @ Os                           # (C Os)^T applied to each row: the rig's torso in SMPL's y-up
    index = {n: i for i, n in enumerate(smpl.JOINT_NAMES)}
    chain = ["pelvis", *SPINE, "neck", "head"][:["pelvis", *SPINE, "neck", "head"].index(top) + 1]
    off = smpl.REST_OFFSETS
    for _ in range(3):
        v = sum(np.einsum("tij,j->ti", g[:, index[a]], off[index[b]]) for a, b in zip(chain, chain[1:]))
        Q = rotation_between(v, want)
        for name in SPINE:
            g[:, index[name]] = Q @ g[:, index[name]]

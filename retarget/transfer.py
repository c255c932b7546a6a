"""Retargeting: put a source Motion onto a target Skeleton as Blender pose-bone channels.

Public API
----------
``retarget(source, target, mapping=None, root_motion='hips', twist='leave', source_mapping=None, anchor=None)
-> TargetAnimation``
    source: a ``Motion`` (SMPL-22 or any skeleton whose names a preset knows, e.g. a BVH).
    target: a ``Skeleton``; mapping: a ``Mapping`` (default ``auto_map(target)``).
    root_motion: 'hips'     the hips bone carries all translation;
                 'root'     a root bone above the hips (role ``root``, else the hips' top ancestor) gets the
                            ground-plane translation and heading yaw, the hips keep the rest;
                 'in_place' no ground-plane travel (vertical motion kept).
    twist: 'drive' twist bones take their preset share of the limb's twist; 'leave' keeps them at rest.
``TargetAnimation``: bone_names, quaternions (T,B,4) = pose_bone.rotation_quaternion (w,x,y,z, sign-continuous
    over frames), locations (T,B,3) = pose_bone.location (non-zero only for ``translated`` bones), translated
    (names of bones whose location is keyed), fps.
``pose_world(anim, skeleton) -> (rotations (T,B,3,3), heads (T,B,3))``: world-space pose (metres, z up),
    what Blender shows as ``obj.matrix_world @ pose_bone.matrix`` (rotation part normalised).
``foot_points(skeleton, roles)``: foot contact points (bone heads and offsets that turn with the bone, never
    bone tails), with rest clearances; ``point_positions(deltas, heads, points)`` poses them.

The maths. G_b is bone b's rest orientation in the world, E_b its pose "world delta" (world pose
orientation = E_b @ G_b). Blender's pose bone: matrix = P_parent @ M_parent^-1 @ M_b @ L_b, so the
pose quaternion is L_b = G_b^T E_parent^T E_b G_b and the location is G_b^T E_parent^T (x_b - x0_b) / scale,
x0_b being where the head sits with zero location. For a mapped bone, E_b = C E_src C^T A_b, where E_src is
the source joint's world delta from its rest, C turns the source body's facing into the target's and A_b
aligns the target bone's rest direction (head -> next mapped joint) with the source's (frames built from
the direction and the body's forward, or up for bones pointing forward) -- this is the rest-pose alignment
that makes T-pose, A-pose or any rest agree. Unmapped spine/neck bones between mapped ones get a slerp
of their neighbours' deltas (rotation spread along the chain); other unmapped bones follow their parent.
Ground travel is scaled by the leg-length ratio, the pelvis's height over the floor by the ratio of the bodies' standing
pelvis heights,
and feet are lifted where they would go below the floor.
"""
from dataclasses import dataclass

import numpy as np

from . import smpl
from .filters import moving_average, moving_max
from .mapping import REQUIRED_ROLES, _is_ancestor, auto_map
from .motion import Motion, MotionError
from .rotations import matrix_to_quaternion, normalize, quaternion_slerp, quaternion_to_matrix, rotation_between
from .skeleton import Skeleton, SkeletonError

UP = np.array([0.0, 0.0, 1.0])
SPINE_CHAIN = ("pelvis", "spine1", "spine2", "spine3", "neck", "head")
CHILD_ROLE = {"spine1": ("spine2", "spine3", "neck", "head"), "spine2": ("spine3", "neck", "head"),
              "spine3": ("neck", "head"), "neck": ("head",)}
for _s in ("left", "right"):
    CHILD_ROLE.update({f"{_s}_collar": (f"{_s}_shoulder",), f"{_s}_shoulder": (f"{_s}_elbow",),
                       f"{_s}_elbow": (f"{_s}_wrist",), f"{_s}_hip": (f"{_s}_knee",),
                       f"{_s}_knee": (f"{_s}_ankle",), f"{_s}_ankle": (f"{_s}_foot",)})
PARENT_ROLE = {"head": ("neck", "spine3"), "neck": ("spine3",)}
for _s in ("left", "right"):
    PARENT_ROLE.update({f"{_s}_wrist": (f"{_s}_elbow",), f"{_s}_foot": (f"{_s}_ankle",), f"{_s}_ankle": (f"{_s}_knee",)})


NEUTRAL_HEAD = ("neck", "head")   # roles an upright source moves from their rest, not by direction (role_alignments)


@dataclass
class TargetAnimation:
    bone_names: tuple
    quaternions: np.ndarray   # (T, B, 4) wxyz, pose_bone.rotation_quaternion
    locations: np.ndarray     # (T, B, 3) pose_bone.location
    translated: tuple         # names of bones whose location is animated
    fps: float
    notes: tuple = ()         # one-line warnings for the user (a correction that was skipped, and why)

    @property
    def num_frames(self):
        return self.quaternions.shape[0]


# ------------------------------------------------------------------------------------------ helpers

def _mul(a, b):
    return np.einsum("...ij,...jk->...ik", a, b)


def _mv(a, v):
    return np.einsum("...ij,...j->...i", a, v)


def _T(a):
    return np.swapaxes(a, -1, -2)


def _rot_about(axis, angle):
    """(…,3,3) rotation by `angle` (…) about a fixed unit axis (3,)."""
    x, y, z = axis
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    a = np.asarray(angle)[..., None, None]
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * (K @ K)


def _frame(d, ref):
    """Columns x, y=d, z: an orthonormal frame with y along d and x towards ref (both (...,3))."""
    y = normalize(d)
    x = normalize(ref - np.sum(ref * y, -1, keepdims=True) * y)
    return np.stack([x, y, np.cross(x, y)], -1)


def continuous_quaternions(q):
    """Flip signs along axis 0 so consecutive quaternions lie in the same hemisphere (smooth F-curves)."""
    if len(q) < 2:
        return q
    dots = np.sum(q[1:] * q[:-1], -1)
    flips = np.concatenate([np.ones((1,) + dots.shape[1:]), np.cumprod(np.where(dots < 0, -1.0, 1.0), 0)], 0)
    return q * flips[..., None]


def estimate_floor(heights):
    """Floor from per-frame lowest foot heights (T,): mean of the 25th-50th percentile (as the reference)."""
    lo, hi = np.percentile(heights, [25, 50])
    sel = heights[(heights >= lo) & (heights <= hi)]
    return float(sel.mean()) if len(sel) else float(np.median(heights))


def _twist_angle(rel, axis):
    """Twist angle of rotation matrices (...,3,3) about a unit axis (3,) (swing-twist decomposition)."""
    q = matrix_to_quaternion(rel)
    return 2 * np.arctan2(q[..., 1:] @ axis, q[..., 0])


def _role_index(skeleton, mapping):
    return {r: skeleton.names.index(b) for r, b in mapping.roles.items()}


FOOT_LENGTH = 0.17   # ankle -> ball of the foot, in leg lengths (SMPL neutral: 0.14 m on a 0.82 m leg)
ANKLE_HEIGHT = 0.10  # ankle above the ground at rest, in leg lengths
MESH_SOLE = 0.02     # vertices this close (in leg lengths) above a foot's lowest vertex make its sole


def standing_height(heads, roles, floor):
    """The pelvis's height over `floor` with the legs straight, from the rest joints (world metres): pelvis to hips,
    thigh and shin as long as they are, and the ankles' rest height. A rig may rest with bent knees (the GDQuest
    mannequin), and the retarget gives it the source's straight legs."""
    hips = np.mean([heads[roles[f"{s}_hip"], 2] for s in ("left", "right")])
    ankles = np.mean([heads[roles[f"{s}_ankle"], 2] for s in ("left", "right")])
    return float(heads[roles["pelvis"], 2] - hips + leg_length(heads, roles) + ankles - floor)


def leg_length(heads, roles):
    """Mean hip -> knee -> ankle length over both legs, from bone heads only (world metres)."""
    return float(np.mean([np.linalg.norm(heads[roles[f"{s}_knee"]] - heads[roles[f"{s}_hip"]])
                          + np.linalg.norm(heads[roles[f"{s}_ankle"]] - heads[roles[f"{s}_knee"]]) for s in ("left", "right")]))


def _foot_end(skeleton, roles, side, forward, leg):
    """(bone, offset) of the foot's far end, from what a rig defines reliably.

    Bone tails are not reliable: glTF has none, and importers invent them (10-40 m long under a 0.01 scale), so the
    end is the toe bone's child's head; without a toe bone, the foot bone's child's head, then the sole of the
    deforming mesh (its front-most lowest vertex), then a point a foot's length ahead on the ground.
    """
    heads = skeleton.world_heads
    bone = roles.get(f"{side}_foot", roles[f"{side}_ankle"])
    kids = skeleton.children[bone]
    if kids:
        far = max(kids, key=lambda c: np.linalg.norm(heads[c] - heads[bone]))
        if np.linalg.norm(heads[far] - heads[bone]) > 1e-3 * leg:
            return bone, heads[far] - heads[bone]
    if f"{side}_foot" in roles:
        return None  # the toe head is the end
    ankle = roles[f"{side}_ankle"]
    verts = skeleton.mesh_points.get(ankle)
    if verts is not None and len(verts):
        sole = verts[verts[:, 2] <= verts[:, 2].min() + MESH_SOLE * leg]
        tip = sole[np.argmax((sole - heads[ankle]) @ forward)]
        return ankle, tip - heads[ankle]
    return ankle, leg * (FOOT_LENGTH * forward - ANKLE_HEIGHT * UP)


def foot_points(skeleton, roles, heads_only=False):
    """Foot contact points per side, and the rest floor z.

    Each side is a list of (bone index, offset (3,), rest clearance): the point sits `offset` (world metres, at
    rest) from the bone's head and turns with the bone. Points: the ankle (foot bone head), the ball (toe bone
    head) and the foot's end (see _foot_end); heads_only keeps the first two. The floor is the lowest point at
    rest (the rest pose stands on it) and each clearance is the point's rest height above it.
    """
    heads = skeleton.world_heads
    leg = leg_length(heads, roles)
    forward = _body_frame(heads, roles)[:, 2] if {"left_shoulder", "right_shoulder"} <= set(roles) else np.zeros(3)
    pts = {}
    for s in ("left", "right"):
        lst = [(roles[f"{s}_ankle"], np.zeros(3))]
        if f"{s}_foot" in roles:
            lst.append((roles[f"{s}_foot"], np.zeros(3)))
        if not heads_only:
            end = _foot_end(skeleton, roles, s, forward, leg)
            if end is not None:
                lst.append(end)
        pts[s] = lst
    z = {k: [heads[i, 2] + o[2] for i, o in v] for k, v in pts.items()}
    floor = min(min(v) for v in z.values())
    return {k: [(i, o, zz - floor) for (i, o), zz in zip(v, z[k])] for k, v in pts.items()}, floor


def rig_report(skeleton, mapping):
    """What the retarget reads from a rig, as a dict: the armature-space axis that points up in the world, the unit
    scale (metres per armature unit), the leg length (m), the rest floor (world z) and each side's foot points."""
    roles = _role_index(skeleton, mapping)
    up = skeleton.object_rotation.T @ UP                       # world up in armature axes
    k = int(np.argmax(np.abs(up)))
    points, floor = foot_points(skeleton, roles)
    heads = skeleton.world_heads

    def where(b, o):
        if not np.any(o):
            return f"{skeleton.names[b]} head"
        kid = next((c for c in skeleton.children[b] if np.allclose(heads[c] - heads[b], o)), None)
        if kid is not None:
            return f"{skeleton.names[kid]} head"
        return f"{skeleton.names[b]} {'mesh sole' if b in skeleton.mesh_points else 'estimated end'}"
    return {"up_axis": ("+" if up[k] > 0 else "-") + "XYZ"[k], "unit_scale": skeleton.object_scale,
            "leg_length": leg_length(heads, roles), "floor": floor,
            "feet": {s: [where(b, o) for b, o, _ in pts] for s, pts in points.items()},
            "preset": mapping.preset, "height": float(skeleton.world_tails[roles["head"], 2] - floor),
            "notes": rig_notes(mapping)}


def rig_notes(mapping):
    """Short notes on how the map reads an unusual rig: arms without hand bones, left/right names that are the
    viewer's."""
    notes = []
    handless = [s for s in ("left", "right") if f"{s}_elbow" in mapping.roles and f"{s}_wrist" not in mapping.roles]
    if handless:
        notes.append(f"no hand bone on the {' and '.join(handless)} arm: the hand keeps its pose on the forearm")
    if "sides" in ((mapping.report or {}).get("notes") or {}):
        notes.append("left/right bone names are the viewer's: swapped")
    return notes


PRESET_NAMES = {"mixamo": "Mixamo", "unreal": "Unreal", "vrm": "VRM", "daz": "Daz", "rigify_metarig": "Rigify",
                "character_creator": "Character Creator", "makehuman": "MakeHuman", "smpl": "SMPL",
                "rokoko": "Rokoko", "biped": "3ds Max Biped", "cmu_bvh": "CMU BVH", "cmu_3dsmax": "CMU BVH",
                "lafan1": "LaFAN1", "bandai_namco": "Bandai-Namco"}


def format_rig_report(report):
    """One line for logs and the panel: what an animator needs first (the kind of rig, its height, whether feet were
    found), then the details (up axis, unit scale, leg length, floor, foot points)."""
    feet = "; ".join(f"{s}: {', '.join(v)}" for s, v in report["feet"].items())
    preset = report.get("preset")
    kind = (f"{PRESET_NAMES[preset]} rig" if preset in PRESET_NAMES else "Custom rig" if preset is None
            else f"Rig ({preset})")
    found = "feet found" if all(report["feet"].get(s) for s in ("left", "right")) else "feet not found"
    notes = "".join(f"; {n}" for n in report.get("notes", ()))
    return (f"{kind}, {report['height']:.2f} m tall, {found}{notes}; up axis {report['up_axis']}, "
            f"unit scale {report['unit_scale']:g}, leg {report['leg_length']:.2f} m, floor z {report['floor']:.3f}, "
            f"feet {feet}")


def point_positions(deltas, heads, points):
    """(T,P,3) posed positions of foot points [(bone, offset, clearance), ...] from world deltas (T,B,3,3) (pose
    orientation times rest orientation transposed; None when every offset is zero) and posed heads (T,B,3)."""
    out = []
    for i, o, _ in points:
        out.append(heads[:, i] if deltas is None or not np.any(o) else heads[:, i] + _mv(deltas[:, i], o))
    return np.stack(out, 1)


def world_deltas(skeleton, rotations):
    """World deltas E (T,B,3,3) from pose_world's rotations: E @ rest orientation = pose orientation."""
    return _mul(rotations, _T(skeleton.world_rest_rotations))


def _source_skeleton(source):
    return Skeleton.from_motion(source)


# ---------------------------------------------------------------------------------------- pose maths

def pose_armature(anim, skeleton, bones=None):
    """{bone index: (rotation (T,3,3), head (T,3))} in armature space (pose_bone.matrix without the object) of a
    TargetAnimation on its skeleton, for the bone indices `bones` and their parents (default every bone)."""
    q = quaternion_to_matrix(anim.quaternions)
    loc = anim.locations
    Rm, hm = skeleton.rest[:, :3, :3], skeleton.rest[:, :3, 3]
    need = set(range(len(skeleton))) if bones is None else set()
    for b in bones or ():
        while b >= 0 and b not in need:
            need.add(b)
            b = skeleton.parents[b]
    out = {}
    for b in sorted(need):                  # parents first
        p = skeleton.parents[b]
        if p < 0:
            out[b] = (Rm[b] @ q[:, b], hm[b] + _mv(Rm[b], loc[:, b]))
        else:
            rel = Rm[p].T @ Rm[b]
            Rp, tp = out[p]
            out[b] = (_mul(Rp, rel @ q[:, b]), tp + _mv(Rp, Rm[p].T @ (hm[b] - hm[p]) + _mv(rel, loc[:, b])))
    return out


def pose_world(anim, skeleton):
    """World rotations (T,B,3,3) and heads (T,B,3) of a TargetAnimation on its skeleton."""
    P = pose_armature(anim, skeleton)
    R = np.stack([P[b][0] for b in range(len(skeleton))], 1)
    t = np.stack([P[b][1] for b in range(len(skeleton))], 1)
    O, s, o = skeleton.object_rotation, skeleton.object_scale, skeleton.object_matrix[:3, 3]
    return _mul(O, R), s * _mv(O, t) + o


def local_from_world(skeleton, E, X, translated):
    """Blender pose channels from world deltas E (T,B,3,3) and world heads X (T,B,3)."""
    G = skeleton.world_rest_rotations
    H = skeleton.world_heads
    T, B = E.shape[:2]
    L = np.empty_like(E)
    loc = np.zeros((T, B, 3))
    for b, p in enumerate(skeleton.parents):
        Ep = E[:, p] if p >= 0 else np.eye(3)
        L[:, b] = G[b].T @ _mul(_T(Ep), E[:, b]) @ G[b]
        if b in translated:
            x0 = X[:, p] + _mv(Ep, H[b] - H[p]) if p >= 0 else H[b]
            loc[:, b] = _mv(G[b].T @ _T(Ep), X[:, b] - x0) / skeleton.object_scale
    q = continuous_quaternions(matrix_to_quaternion(L))
    return q, loc


def fk_positions(skeleton, E, X_fixed):
    """World heads (T,B,3) from world deltas; bones in X_fixed {index: (T,3)} are placed there."""
    H = skeleton.world_heads
    T = E.shape[0]
    X = np.empty((T, len(skeleton), 3))
    for b, p in enumerate(skeleton.parents):
        if b in X_fixed:
            X[:, b] = X_fixed[b]
        elif p < 0:
            X[:, b] = H[b]
        else:
            X[:, b] = X[:, p] + _mv(E[:, p], H[b] - H[p])
    return X


# ----------------------------------------------------------------------------------------- retarget

def _check_motion(source):
    if not isinstance(source, Motion):
        raise MotionError(f"source must be a Motion, got {type(source).__name__}")
    source.validate()


def _body_frame(heads, roles):
    """Columns left, up, forward (world; up = +Z): left from hips and shoulders, projected to the ground."""
    left = heads[roles["left_hip"]] - heads[roles["right_hip"]]
    left = left + heads[roles["left_shoulder"]] - heads[roles["right_shoulder"]]
    left = left - (left @ UP) * UP
    if np.linalg.norm(left) < 1e-9:
        raise SkeletonError("cannot tell left from right: the left and right hips/shoulders coincide in the ground plane")
    left = normalize(left)
    return np.stack([left, UP, np.cross(left, UP)], -1)


def role_alignments(src_skel, sr, target, tr, mapping, neutral_head=False):
    """(C (3,3), {role: A_r (3,3)}, roles in order): C turns the source body's facing into the target's, A_r aligns
    the target bone's rest direction with the source joint's (both in the target's world frame). The retarget
    sets E_b = C E_src C^T A_r; retarget.inverse undoes it with the same C and A_r.

    neutral_head (a source on its own upright zero pose, as SMPL's is): the neck and head are not aligned (A = I), so
    the source's rest pose leaves them at the rig's rest. SMPL's head joint sits in the middle of the skull, 38 degrees
    forward of its neck joint at rest, where a rig's head bone starts above its neck: aligning those directions pitched
    every rig's head 25-32 degrees down, looking at the floor."""
    Hs, Ht = src_skel.world_heads, target.world_heads
    Fs, Ft = _body_frame(Hs, sr), _body_frame(Ht, tr)
    C = Ft @ Fs.T
    fwd = Ft[:, 2]
    # a joint that stands on its parent's point gives no direction: CMU's Spine1, Neck and LeftShoulder share one
    # point, and a frame built from that zero vector wrecked the upper body; such a role aims at the next joint on
    size_s, size_t = np.ptp(Hs, 0).max(), np.ptp(Ht, 0).max()   # each in its own units

    def aims(r, c):
        return (c in tr and c in sr and np.linalg.norm(Hs[sr[c]] - Hs[sr[r]]) > 1e-3 * size_s
                and np.linalg.norm(Ht[tr[c]] - Ht[tr[r]]) > 1e-3 * size_t)
    A = {}
    order = [r for r in mapping.roles if r in sr and r != "root"]
    for r in order:
        child = next((c for c in CHILD_ROLE.get(r, ()) if aims(r, c)), None)
        if neutral_head and r in NEUTRAL_HEAD:
            A[r] = np.eye(3)
        elif r == "pelvis":
            # the torso as a whole (pelvis -> neck, or the highest spine joint), with left/right from the hips
            top = next((c for c in ("neck", "head", "spine3") if aims(r, c)), None)
            ds, dt = C @ (Hs[sr[top]] - Hs[sr[r]]), Ht[tr[top]] - Ht[tr[r]]
            ls = C @ (Hs[sr["left_hip"]] - Hs[sr["right_hip"]])
            lt = Ht[tr["left_hip"]] - Ht[tr["right_hip"]]
            A[r] = _frame(ds, ls) @ _frame(dt, lt).T
        else:
            if child is not None:
                ds, dt = C @ (Hs[sr[child]] - Hs[sr[r]]), Ht[tr[child]] - Ht[tr[r]]
            elif r.endswith("_elbow") and r.replace("elbow", "wrist") in sr:
                # an arm without a hand bone (mapping.required_roles): the forearm aims along its own axis
                ds, dt = C @ (Hs[sr[r.replace("elbow", "wrist")]] - Hs[sr[r]]), target.world_rest_rotations[tr[r]][:, 1]
            else:
                continue
            ref = UP if abs(normalize(ds) @ fwd) > 0.7 else fwd
            A[r] = _frame(ds, ref) @ _frame(dt, ref).T
    for r in order:  # end bones keep their rest relation to the parent role
        if r not in A:
            par = next((p for p in PARENT_ROLE.get(r, ()) if p in A), "pelvis")
            A[r] = A[par]
    return C, A, order


def retarget(source, target, mapping=None, root_motion="hips", twist="leave", source_mapping=None, anchor=None):
    """Retarget a Motion onto a Skeleton; see the module docstring. Raises MotionError/SkeletonError (one line).

    anchor: the source ground point (x, z of its y-up translation) that the target's rest pelvis stands for;
    default the first frame's pelvis, so the clip starts where the rig stands. A continuation passes the origin of
    the motion it continues (retarget.inverse puts the rig's rest pelvis there) to carry on from where it ended."""
    _check_motion(source)
    if root_motion not in ("hips", "root", "in_place"):
        raise ValueError(f"root_motion must be 'hips', 'root' or 'in_place', got {root_motion!r}")
    if twist not in ("drive", "leave"):
        raise ValueError(f"twist must be 'drive' or 'leave', got {twist!r}")
    mapping = auto_map(target) if mapping is None else mapping
    mapping.validate(target)
    # a source standing upright on its own zero pose (SMPL's, a T-posed BVH) moves the neck and head from that rest
    # (role_alignments); one rested on its first frame (Bandai-Namco) has only directions to go by
    neutral_head = source.rest_is_upright()
    if not neutral_head:
        source = source.rested_at(0)   # the first frame stands as a rest pose would; the zero pose does not
    src_skel = _source_skeleton(source)
    source_mapping = auto_map(src_skel) if source_mapping is None else source_mapping
    try:
        # a source whose neck ends the chain (the head only an End Site: three.js' pirouette, GAMES-105) still moves
        # the rig's head: it turns with the neck
        required = [r for r in REQUIRED_ROLES if r != "head" or "neck" not in source_mapping.roles]
        source_mapping.validate(src_skel, required)
    except SkeletonError as e:
        raise MotionError(f"the source motion's skeleton: {e}") from None
    sr, tr = _role_index(src_skel, source_mapping), _role_index(target, mapping)

    # ---- source world deltas and positions
    Os = src_skel.object_rotation
    g_rot, g_pos = smpl.forward_kinematics(source.rotations, source.translation, source.offsets, source.parents)
    T = g_rot.shape[0]
    Hs, Ht = src_skel.world_heads, target.world_heads
    C, A, order = role_alignments(src_skel, sr, target, tr, mapping, neutral_head)
    fwd = _body_frame(Ht, tr)[:, 2]

    B = len(target)
    E = np.empty((T, B, 3, 3))
    mapped = {tr[r]: r for r in order}
    Es = {r: C @ Os @ g_rot[:, sr[r]] @ Os.T @ C.T @ A[r] for r in order}  # rest of the source is identity
    # spine/neck intermediates: slerp between the mapped neighbours along the chain
    between = {}
    chain_bones = [tr[r] for r in SPINE_CHAIN if r in tr and r in sr]
    for a, d in zip(chain_bones[:-1], chain_bones[1:]):
        path, j = [], target.parents[d]
        while j >= 0 and j != a:
            path.append(j)
            j = target.parents[j]
        if j != a or not path:
            continue
        pts = [Ht[a]] + [Ht[k] for k in reversed(path)] + [Ht[d]]
        seg = np.cumsum([0.0] + [np.linalg.norm(pts[i + 1] - pts[i]) for i in range(len(pts) - 1)])
        for k, w in zip(reversed(path), seg[1:-1] / max(seg[-1], 1e-9)):
            between[k] = (mapped[a], mapped[d], w)
    qcache = {}

    def quat(r):
        if r not in qcache:
            qcache[r] = matrix_to_quaternion(Es[r])
        return qcache[r]

    G = target.world_rest_rotations
    twists = {t["bone"]: t for t in mapping.twist} if twist == "drive" else {}
    twists = {target.names.index(n): t for n, t in twists.items() if n in target.names and t["limb"] in tr}
    in_chain_limb = {}
    # twist turns about the limb's direction from joint to joint (world, rest), not about the bones' y axes:
    # those follow the tails, which importers invent
    limb_axis = {}
    for k, t in twists.items():
        X = tr[t["limb"]]
        child = next((c for c in CHILD_ROLE.get(t["limb"], ()) if c in tr), None)
        limb_axis[k] = normalize(Ht[tr[child]] - Ht[X]) if child else G[X][:, 1]
        j = target.parents[tr[child]] if child else -1
        while j >= 0 and j != X:
            if j == k:
                in_chain_limb[X] = k
            j = target.parents[j]
    root_bone, Ey = None, None
    if root_motion == "root":
        root_bone = tr.get("root")
        if root_bone is None:
            j = tr["pelvis"]
            while target.parents[j] >= 0:
                j = target.parents[j]
            if j == tr["pelvis"]:
                raise SkeletonError("root_motion='root' needs a root bone above the hips, and this rig has none; use 'hips' or 'in_place'")
            root_bone = j
        f = _mv(Es["pelvis"], fwd)
        yaw = np.arctan2(np.cross(fwd, f) @ UP, f @ fwd)
        Ey = _rot_about(UP, yaw)
    carrier = body_carrier(target, tr)
    if root_bone is not None and carrier != tr["pelvis"] and (carrier == root_bone or _is_ancestor(target, carrier, root_bone)):
        carrier = tr["pelvis"]  # the root bone sits between: it carries the travel, the pelvis the rest
    # a torso modelled as one rigid piece bends nowhere: RobotExpressive's torso mesh rides on the bone below its
    # spine, and its spine bones move nothing of their own; bent, they would pull the neck and arms out of it
    torso = {tr[r] for r in ("pelvis", "spine1", "spine2", "spine3") if r in tr} | {
        k for k, (ra, rd, _) in between.items() if rd in ("spine1", "spine2", "spine3", "neck")}
    rigid = set() if target.moving is None else {b for b in torso - {carrier} if b not in target.moving}
    for b, p in enumerate(target.parents):
        Ep = E[:, p] if p >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        if b in rigid:
            E[:, b] = Ep
        elif b in mapped:
            E[:, b] = Es[mapped[b]]
        elif b in between:
            ra, rd, w = between[b]
            E[:, b] = quaternion_to_matrix(quaternion_slerp(quat(ra), quat(rd), np.full(quat(ra).shape[:-1], w)))
        elif b in twists:
            t = twists[b]
            X = tr[t["limb"]]
            if t["source"] == "self":
                px = target.parents[X]
                Epx = E[:, px] if px >= 0 else np.eye(3)
                rel = _mul(_T(Epx), Es[t["limb"]])       # the limb's rotation relative to its parent, world rest axes
            else:
                child = next((c for c in CHILD_ROLE.get(t["limb"], ()) if c in tr), None)
                if child is None:
                    E[:, b] = Ep
                    continue
                rel = _mul(_T(Es[t["limb"]]), Es[child])  # the child's rotation relative to the limb
            ang = t["share"] * _twist_angle(rel, limb_axis[b])
            E[:, b] = _mul(Ep, _rot_about(limb_axis[b], ang))
        elif b == root_bone:
            E[:, b] = Ey
        elif b == carrier:   # a control bone above sibling pelvis and spine turns as the pelvis, as SMPL's spine hangs
            E[:, b] = Es["pelvis"]
        else:
            E[:, b] = Ep
        if b in in_chain_limb and twists[in_chain_limb[b]]["source"] == "self":
            # a bend bone in a chain with its own twist bone: hand the twist share over to the twist bone
            t = twists[in_chain_limb[b]]
            px = target.parents[b]
            Epx = E[:, px] if px >= 0 else np.eye(3)
            axis = limb_axis[in_chain_limb[b]]
            E[:, b] = _mul(E[:, b], _rot_about(axis, -t["share"] * _twist_angle(_mul(_T(Epx), E[:, b]), axis)))

    _keep_torso_lean(target, E, tr, sr, C, Ht, g_pos @ Os.T, carrier, bend_torso=not rigid, neutral_head=neutral_head)

    # ---- translation: scale by leg ratio, heights relative to each body's rest height
    k = leg_length(Ht, tr) / leg_length(Hs, sr)
    src_world = (g_pos @ Os.T)  # (T,J,3) source joints in its world (source object has no translation)
    spts, s_floor_rest = foot_points(src_skel, sr, heads_only=True)
    s_low = np.min(np.stack([src_world[:, i, 2] - c for side in spts.values() for i, _, c in side], 1), 1)
    # the floor is where the feet stand, unless the body lies lower than its feet for a while (lying on the belly with
    # the feet in the air): the lowest of the other joints, at its 5th percentile over the clip, is never below it
    foot_joints = {i for side in spts.values() for i, _, _ in side}
    others = [j for j in range(src_world.shape[1]) if j not in foot_joints]
    s_floor = min(estimate_floor(s_low), float(np.percentile(src_world[:, others, 2].min(1), 5)))
    tpts, t_floor = foot_points(target, tr)
    ps = src_world[:, sr["pelvis"]]
    ps0 = ps[0] if anchor is None else Os @ np.array([anchor[0], 0.0, anchor[1]])
    d = k * _mv(C, ps - ps0)
    d[:, 2] = 0.0
    if root_motion == "in_place":
        d[:] = 0.0
    h_src_rest = standing_height(Hs, sr, s_floor_rest)
    h_tgt_rest = standing_height(Ht, tr, t_floor)
    pel = np.empty((T, 3))
    pel[:, :2] = Ht[tr["pelvis"], :2] + d[:, :2]
    # the pelvis's height over the floor in proportion to each body's standing height: right standing (rest) and
    # lying (on the floor) alike; a leg-ratio offset from the rest height put a lying body 0.3 m into the floor
    pel[:, 2] = t_floor + (h_tgt_rest / h_src_rest) * (ps[:, 2] - s_floor)
    def carried(pel):
        """{carrier: its head (T,3)} that puts the pelvis head at `pel` (the carrier turns as its parent does)."""
        Ec = E[:, carrier]
        return {carrier: pel - _mv(Ec, Ht[tr["pelvis"]] - Ht[carrier]) if carrier != tr["pelvis"] else pel}
    fixed = carried(pel)
    translated = {carrier}
    if root_bone is not None:
        fixed[root_bone] = Ht[root_bone] + d
        translated.add(root_bone)
    X = fk_positions(target, E, fixed)
    notes = []
    # a lift beyond both the source's vertical range and a tenth of the leg is a wrong guess about where a foot ends
    limit = max(k * np.ptp(ps[:, 2]), 0.1 * leg_length(Ht, tr))
    lift = _floor_lift(target, E, X, tpts, t_floor, limit, notes, source.fps)
    if lift.any():
        pel = pel.copy()
        pel[:, 2] += lift
        fixed.update(carried(pel))
        X = fk_positions(target, E, fixed)
    q, loc = local_from_world(target, E, X, translated)
    return TargetAnimation(target.names, q, loc, tuple(target.names[b] for b in sorted(translated)), float(source.fps),
                           tuple(notes))


def body_carrier(skeleton, roles):
    """The bone that carries the body's translation: the pelvis, or, where the pelvis does not carry both the spine
    and the thighs, the lowest bone above them all, so that they move together. Godot-chan's pelvis and spine are
    siblings under a control bone (Base -> pelvis -> thighs; Base -> spine); RobotExpressive's thighs hang from the
    bone above its Hips (Body -> Hips -> Abdomen; Body -> UpperLeg.L)."""
    pel = roles["pelvis"]
    carried = [roles[r] for r in ("left_hip", "right_hip") if r in roles]
    top = next((roles[r] for r in ("spine1", "spine2", "spine3", "neck", "head") if r in roles), None)
    carried += [top] if top is not None else []
    j = pel
    while j >= 0 and not all(b == j or _is_ancestor(skeleton, j, b) for b in carried):
        j = skeleton.parents[j]
    return pel if j < 0 else j


def _floor_lift(target, E, X, points, floor, limit, notes, fps):
    """(T,) how far to raise the body so that no foot point goes below the floor.

    A lift is a guess about the rig, not something the source asked for, so it never exceeds the source's own
    vertical range (`limit`, scaled to the target): a point that would need more is wrong about where the foot
    ends (an invented bone tail, a stray mesh), and its correction is skipped with one note naming its bone.
    """
    flat = [p for side in points.values() for p in side]
    need = floor - (point_positions(E, X, flat)[..., 2] - np.array([c for *_, c in flat]))  # (T, P)
    too_far = need > limit + 1e-9
    for p in np.flatnonzero(too_far.any(0)):
        b = flat[p][0]
        msg = (f"bone {target.names[b]!r}: lifting the body {need[:, p].max():.2f} m to keep this foot point above the "
               f"floor would exceed both the motion's vertical range and a tenth of the leg ({limit:.2f} m); skipped")
        if msg not in notes:
            notes.append(msg)
    lift = np.maximum(np.where(too_far, 0.0, need), 0.0).max(1)
    if lift.any():   # a smooth envelope: a lift that jumps with every step would show as a bobbing pelvis
        w = 2 * int(round(0.25 * fps)) + 1
        lift = moving_average(moving_max(lift, w), w)
    return lift



def _keep_torso_lean(target, E, tr, sr, C, Ht, src_world, carrier, bend_torso=True, neutral_head=False):
    """Turn the spine bones (pelvis .. neck, exclusive) together so the pelvis -> neck direction matches the source,
    and the neck bones (neck .. head, exclusive) so that neck -> head does.

    Spines of other proportions bend the same per-vertebra angles into a different overall lean; animators
    read the lean (where the chest is over the pelvis), so it is kept, and bones above keep their own directions.
    A neck of two joints (CMU's Neck and Neck1) bends over both, so one target neck bone turned as the first of them
    leaves the head's position short of the bend: the neck -> head direction is kept the same way, unless the neck and
    head move from their rest (neutral_head, role_alignments). A rigid torso (bend_torso False) keeps its shape and
    leans as a whole: the carrier turns with it."""
    top = next((c for c in ("neck", "head") if c in tr and c in sr), None)
    if top is None:
        return
    want = _mv(C, src_world[:, sr[top]] - src_world[:, sr["pelvis"]])
    pel, nk = tr["pelvis"], tr[top]
    if carrier != pel:   # the spine hangs off the control bone beside the pelvis: aim carrier -> neck instead
        want = _mv(E[:, carrier], Ht[pel] - Ht[carrier]) + np.linalg.norm(Ht[nk] - Ht[pel]) * normalize(want)
    # a rigid torso leans as a whole, on the bone that carries it
    _turn_chain(target, E, Ht, carrier, nk, want, include_top=not bend_torso)
    # neutral_head: the neck and head already turn as the source's from rest (role_alignments), nothing to keep
    if top == "neck" and "head" in tr and "head" in sr and not neutral_head:
        _turn_chain(target, E, Ht, tr["neck"], tr["head"], _mv(C, src_world[:, sr["head"]] - src_world[:, sr["neck"]]),
                    include_top=True)


def _turn_chain(target, E, Ht, top, end, want, include_top=False):
    """Turn the bones from `top` (exclusive, unless include_top) down to `end` (exclusive) together, so that the
    top -> end head-to-head vector points along `want` (T,3)."""
    path, j = [], target.parents[end]
    while j >= 0 and j != top:
        path.append(j)
        j = target.parents[j]
    if j != top:
        return
    path = path[::-1]                        # top's child .. end's parent
    chain = [top] + path
    turned = ([top] if include_top else []) + path
    if not turned:
        return
    for _ in range(3):
        v = 0.0
        for a, b in zip(chain, chain[1:] + [end]):
            v = v + _mv(E[:, a], Ht[b] - Ht[a])
        Q = rotation_between(v, want)
        for b in turned:
            E[:, b] = _mul(Q, E[:, b])

"""Armature object <-> retarget: read a bpy armature into a Skeleton, and turn a Motion into keys on it."""
import bpy
import numpy as np

from . import bonemap, control_rig
from ._rt import feet, transfer, skeleton as skeleton_mod

ROOT_MOTION = (("hips", "Hips", "The hips bone carries all translation"),
               ("root", "Root bone", "A root bone above the hips carries ground travel and heading"),
               ("in_place", "In place", "No ground-plane travel (vertical motion kept)"))


MESH_KEEP = 32  # lowest vertices kept per bone: the sole of a foot is all the retarget asks of a mesh


def deforming_meshes(obj):
    return [m for m in bpy.data.objects if m.type == "MESH"
            and any(md.type == "ARMATURE" and md.object == obj for md in m.modifiers)]


def mesh_points(obj, index):
    """({bone index: (N,3)} world rest positions of the lowest vertices of the meshes `obj` deforms, each vertex under
    the bone that weighs most on it; the set of bone indices that move any geometry: a weighted vertex, or a mesh
    parented to the bone). The lowest vertices find where a foot ends on a rig without toe bones. Real characters
    deform several meshes (body, joints, clothes, eyes): every mesh adds its vertices to the same bones."""
    found = {}
    moving = {index[o.parent_bone] for o in bpy.data.objects
              if o.parent == obj and o.parent_type == "BONE" and o.parent_bone in index}
    for m in deforming_meshes(obj):
        groups = {g.index: index.get(g.name) for g in m.vertex_groups}
        mw = np.array(m.matrix_world)
        local, weighted = {}, set()
        for v in m.data.vertices:
            if v.groups:
                weighted.update(e.group for e in v.groups if e.weight > 0)
                b = groups.get(max(v.groups, key=lambda e: e.weight).group)
                if b is not None:
                    local.setdefault(b, []).append(tuple(v.co))
        moving.update(groups.get(g) for g in weighted)
        for b, co in local.items():
            found.setdefault(b, []).append(np.array(co) @ mw[:3, :3].T + mw[:3, 3])
    lowest = {}
    for b, parts in found.items():
        w = np.concatenate(parts)
        lowest[b] = w[np.argsort(w[:, 2])[:MESH_KEEP]]
    moving.discard(None)
    return lowest, (moving or None)     # no geometry found: not known, rather than "nothing moves any"


def _armature_order(obj):
    """Bone names parents first, siblings in the armature's order."""
    order, stack = [], [b for b in obj.data.bones if b.parent is None][::-1]
    while stack:
        b = stack.pop()
        order.append(b.name)
        stack.extend(list(b.children)[::-1])
    return order


def skeleton_from_object(obj):
    """Names (parents first), parents, bone.matrix_local, lengths, matrix_world and the lowest deforming-mesh
    vertices per bone of an armature object. For a control rig (control_rig.recognise), its deform bones only,
    each under the deform bone above it: what the retarget solves before the controls are found. A deforming bone
    that an IK chain reaches for from where the chain ends is read as the chain's next bone
    (control_rig.ik_target_parents): RobotExpressive's feet are root bones its IK shins reach for."""
    ctl = control_rig.recognise(obj)
    if ctl is None:
        parent_of = {b.name: b.parent.name if b.parent else None for b in obj.data.bones}
        parent_of.update(control_rig.ik_target_parents(obj))
    else:
        parent_of = ctl.deform_bones()
    children = {}
    for n in _armature_order(obj):
        if n in parent_of:
            children.setdefault(parent_of[n], []).append(n)
    order, stack = [], children.get(None, [])[::-1]
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(children.get(n, [])[::-1])
    bones = obj.data.bones
    index = {n: i for i, n in enumerate(order)}
    return skeleton_mod.Skeleton(order, [index[parent_of[n]] if parent_of[n] else -1 for n in order],
                                 np.array([np.array(bones[n].matrix_local) for n in order]),
                                 np.array([bones[n].length for n in order]),
                                 np.array(obj.matrix_world), *mesh_points(obj, index))


def edited_roles(obj):
    """role -> bone of the map edited in the panel for armature `obj` (props.MOTIONMILL_PG_bone_map), or None when
    the rig has none (or the add-on's properties are not registered)."""
    stored = getattr(obj.data, "motionmill_bone_map", None)
    if stored is None or not len(stored.roles):
        return None
    return {e.name: e.bone for e in stored.roles if e.bone}


def mapping_for(obj, skel=None):
    """The bone map the retarget uses for armature `obj`: the one edited in the panel when the rig has one, else the
    auto-map (with the user's saved bone-map presets)."""
    return bonemap.mapping_for(skel or skeleton_from_object(obj), edited_roles(obj))


def check_keyable(obj, mapping):
    """Raise SkeletonError (one line) when the map puts a role on a bone a constraint moves and no control drives it:
    its keys would do nothing, and the clip would play wrong. Rigify rigs, and roles on IK chains or on bones that
    copy another bone, are keyed on their controls (control_rig)."""
    control_rig.for_rig(obj, mapping.roles)


def rig_report(obj, controls="ik-legs"):
    """One line: what the retarget reads from the rig (a control rig and how its limbs are keyed, up axis, unit
    scale, leg length, floor, foot points), or why it cannot map it."""
    skel = skeleton_from_object(obj)
    mapping = mapping_for(obj, skel)
    try:
        mapping.validate(skel)
        check_keyable(obj, mapping)
    except skeleton_mod.SkeletonError as err:
        return str(err)
    line = transfer.format_rig_report(transfer.rig_report(skel, mapping))
    ctl = control_rig.for_rig(obj, mapping.roles)
    return line if ctl is None else f"{ctl.describe(controls)}; {line}"


def scene_fps(scene):
    return scene.render.fps / scene.render.fps_base


def solve(motion, obj, fps, root_motion="hips", cleanup=False, controls="ik-legs"):
    """Motion -> TargetAnimation on armature `obj` at `fps` (real-time speed kept), optionally foot-cleaned. On a
    control rig (control_rig.for_rig) it is the pose of the bones the retarget reads; control_rig.solve_controls
    turns it into keys on the controls (`controls`: fk / ik-legs / ik), and feet keyed on IK controls are held in
    one pose while planted.

    Raises retarget's MotionError / SkeletonError with one-line messages."""
    skel = skeleton_from_object(obj)
    mapping = mapping_for(obj, skel)
    try:
        mapping.validate(skel)
        ctl = control_rig.for_rig(obj, mapping.roles)
    except skeleton_mod.SkeletonError as err:
        raise skeleton_mod.SkeletonError(f"{err}; fix it in the MotionMill panel's Bone Map") from None
    return retarget_onto(motion.resample(fps), skel, mapping, ctl, root_motion, cleanup, controls), skel, mapping


def retarget_onto(motion, skel, mapping, ctl, root_motion, cleanup, controls, anchor=None):
    """The retarget (and foot cleanup) of `motion` onto `skel`, with a control rig's rules when `ctl` is one
    (control_rig.for_rig): its root control is placed from the pelvis later (control_rig.solve_controls), so the
    solve keeps the travel on the hips; feet keyed on IK controls hold one pose while planted."""
    solve_root = "hips" if isinstance(ctl, control_rig.ControlRig) and root_motion == "root" else root_motion
    anim = transfer.retarget(motion, skel, mapping, root_motion=solve_root, anchor=anchor)
    if cleanup:
        flat = ctl is not None and ctl.holds_feet_flat(controls)
        anim = feet.cleanup_feet(anim, skel, mapping, feet.FootParams(hold_flat=flat))
    return anim


def is_armature(obj):
    return obj is not None and obj.type == "ARMATURE"

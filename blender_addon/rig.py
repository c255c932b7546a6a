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
    """{bone index: (N,3)} world rest positions of the lowest vertices of the meshes `obj` deforms, each vertex under
    the bone that weighs most on it. Used to find where a foot ends on a rig without toe bones. Real characters
    deform several meshes (body, joints, clothes, eyes): every mesh adds its vertices to the same bones."""
    found = {}
    for m in deforming_meshes(obj):
        groups = {g.index: index.get(g.name) for g in m.vertex_groups}
        mw = np.array(m.matrix_world)
        local = {}
        for v in m.data.vertices:
            if v.groups:
                b = groups.get(max(v.groups, key=lambda e: e.weight).group)
                if b is not None:
                    local.setdefault(b, []).append(tuple(v.co))
        for b, co in local.items():
            found.setdefault(b, []).append(np.array(co) @ mw[:3, :3].T + mw[:3, 3])
    lowest = {}
    for b, parts in found.items():
        w = np.concatenate(parts)
        lowest[b] = w[np.argsort(w[:, 2])[:MESH_KEEP]]
    return lowest


def skeleton_from_object(obj):
    """Names (parents first), parents, bone.matrix_local, lengths, matrix_world and the lowest deforming-mesh
    vertices per bone of an armature object. For a control rig (control_rig.recognise), its deform bones only,
    each under the deform bone above it: what the retarget solves before the controls are found."""
    ctl = control_rig.recognise(obj)
    if ctl is None:
        order, stack = [], [b for b in obj.data.bones if b.parent is None][::-1]
        while stack:
            b = stack.pop()
            order.append(b.name)
            stack.extend(list(b.children)[::-1])
        parent_of = {b.name: b.parent.name if b.parent else None for b in obj.data.bones}
    else:
        parent_of = ctl.deform_bones()
        children = {}
        for n, p in parent_of.items():
            children.setdefault(p, []).append(n)
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
                                 np.array(obj.matrix_world), mesh_points(obj, index))


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


# constraints that, at full influence, decide a bone's rotation whatever its keys say
_ROTATION_OVERRIDES = {"COPY_TRANSFORMS", "DAMPED_TRACK", "TRACK_TO", "LOCKED_TRACK", "STRETCH_TO"}


def constraint_driven(obj):
    """{bone name: why} for the bones whose keys a constraint would override: members of an IK chain with a target,
    bones with Copy Transforms, a track or stretch constraint, or Copy Rotation on all three axes (replacing), each
    enabled at full influence. Keys on such bones do nothing in Blender's evaluation."""
    driven = {}
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if not getattr(c, "enabled", not c.mute) or c.influence < 0.999:
                continue
            if c.type == "IK" and getattr(c, "target", None) is not None:
                b, n = pb, c.chain_count or len(obj.pose.bones)
                while b is not None and n > 0:
                    driven.setdefault(b.name, f"the IK constraint {c.name!r} on {pb.name!r}")
                    b, n = b.parent, n - 1
            elif c.type in _ROTATION_OVERRIDES or (c.type == "COPY_ROTATION" and c.use_x and c.use_y and c.use_z
                                                   and getattr(c, "mix_mode", "REPLACE") == "REPLACE"):
                driven.setdefault(pb.name, f"its {c.type.replace('_', ' ').title()} constraint {c.name!r}")
    return driven


def check_keyable(obj, mapping):
    """Raise SkeletonError (one line) when the map puts a role on a bone a constraint moves: its keys would do
    nothing, and the clip would play wrong. Control rigs (Rigify, IK limbs) are keyed on their controls later."""
    if control_rig.recognise(obj) is not None:    # keyed on its controls (control_rig.solve_controls)
        return
    driven = constraint_driven(obj)
    hit = [(r, b) for r, b in mapping.roles.items() if b in driven]
    if hit:
        role, bone = hit[0]
        more = f" (and {len(hit) - 1} more role(s))" if len(hit) > 1 else ""
        raise skeleton_mod.SkeletonError(
            f"cannot key {bone!r} ({role}): {driven[bone]} overrides its keys{more}; MotionMill does not key control "
            f"rigs (Rigify, IK limbs) yet: map {role} to a bone no constraint moves")


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
    ctl = control_rig.recognise(obj)
    return line if ctl is None else f"{ctl.describe(controls)}; {line}"


def scene_fps(scene):
    return scene.render.fps / scene.render.fps_base


def solve(motion, obj, fps, root_motion="hips", cleanup=False, hold_flat=False):
    """Motion -> TargetAnimation on armature `obj` at `fps` (real-time speed kept), optionally foot-cleaned (with
    hold_flat, a foot with heel and ball down holds one pose: what IK foot controls are keyed from).

    Raises retarget's MotionError / SkeletonError with one-line messages."""
    skel = skeleton_from_object(obj)
    mapping = mapping_for(obj, skel)
    try:
        mapping.validate(skel)
        check_keyable(obj, mapping)
    except skeleton_mod.SkeletonError as err:
        raise skeleton_mod.SkeletonError(f"{err}; fix it in the MotionMill panel's Bone Map") from None
    motion = motion.resample(fps)
    anim = transfer.retarget(motion, skel, mapping, root_motion=root_motion)
    if cleanup:
        anim = feet.cleanup_feet(anim, skel, mapping, feet.FootParams(hold_flat=hold_flat))
    return anim, skel, mapping


def is_armature(obj):
    return obj is not None and obj.type == "ARMATURE"

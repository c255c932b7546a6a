"""Armature object <-> retarget: read a bpy armature into a Skeleton, and turn a Motion into keys on it."""
import numpy as np

from ._rt import feet, mapping as mapping_mod, transfer, skeleton as skeleton_mod

ROOT_MOTION = (("hips", "Hips", "The hips bone carries all translation"),
               ("root", "Root bone", "A root bone above the hips carries ground travel and heading"),
               ("in_place", "In place", "No ground-plane travel (vertical motion kept)"))


def skeleton_from_object(obj):
    """Names (parents first), parents, bone.matrix_local, lengths and matrix_world of an armature object."""
    order = []
    stack = [b for b in obj.data.bones if b.parent is None][::-1]
    while stack:
        b = stack.pop()
        order.append(b)
        stack.extend(list(b.children)[::-1])
    index = {b.name: i for i, b in enumerate(order)}
    return skeleton_mod.Skeleton([b.name for b in order],
                                 [index[b.parent.name] if b.parent else -1 for b in order],
                                 np.array([np.array(b.matrix_local) for b in order]),
                                 np.array([b.length for b in order]),
                                 np.array(obj.matrix_world))


def scene_fps(scene):
    return scene.render.fps / scene.render.fps_base


def solve(motion, obj, fps, root_motion="hips", cleanup=False):
    """Motion -> TargetAnimation on armature `obj` at `fps` (real-time speed kept), optionally foot-cleaned.

    Raises retarget's MotionError / SkeletonError with one-line messages."""
    skel = skeleton_from_object(obj)
    mapping = mapping_mod.auto_map(skel)
    motion = motion.resample(fps)
    anim = transfer.retarget(motion, skel, mapping, root_motion=root_motion)
    if cleanup:
        anim = feet.cleanup_feet(anim, skel, mapping)
    return anim, skel, mapping


def is_armature(obj):
    return obj is not None and obj.type == "ARMATURE"

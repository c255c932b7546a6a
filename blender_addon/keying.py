"""Write a TargetAnimation into a NEW action as whole F-curves (foreach_set, not keyframe_insert)."""
import numpy as np

from . import compat

LINEAR = 1  # Keyframe.interpolation enum index of 'LINEAR'


def _write_curve(fcurves, data_path, index, group, frames, values):
    fc = compat.new_fcurve(fcurves, data_path, index, group)
    n = len(frames)
    fc.keyframe_points.add(n)
    co = np.empty(2 * n, np.float32)
    co[0::2] = frames
    co[1::2] = values
    fc.keyframe_points.foreach_set("co", co)
    fc.keyframe_points.foreach_set("interpolation", np.full(n, LINEAR, np.int32))
    fc.update()
    return fc


def new_action(name, props=None):
    """A new action named `name` (Blender makes the name unique; existing actions stay untouched)."""
    import bpy
    action = bpy.data.actions.new(name=name[:63] or "MotionMill")
    for k, v in (props or {}).items():
        if v is not None:
            action[k] = v
    return action


def key_animation(obj, anim, name, start_frame, props=None, assign=True):
    """Key `anim` (retarget.transfer.TargetAnimation) on armature `obj` from `start_frame`, one key per frame.

    Returns (action, slot). With assign=True the action becomes the object's active action; the one it replaces
    is kept (fake user) so nothing is lost. Pose bones of the animation are switched to quaternion rotation."""
    action = new_action(name, props)
    slot = compat.ensure_slot(action, obj)
    fcurves = compat.fcurves_for(action, slot)
    T = anim.num_frames
    frames = start_frame + np.arange(T, dtype=np.float64)
    translated = set(anim.translated)
    for b, bname in enumerate(anim.bone_names):
        pb = obj.pose.bones.get(bname)
        if pb is None:
            continue
        pb.rotation_mode = "QUATERNION"
        base = f'pose.bones["{_escape(bname)}"]'
        for i in range(4):
            _write_curve(fcurves, base + ".rotation_quaternion", i, bname, frames, anim.quaternions[:, b, i])
        if bname in translated:
            for i in range(3):
                _write_curve(fcurves, base + ".location", i, bname, frames, anim.locations[:, b, i])
    if assign:
        ad = obj.animation_data or obj.animation_data_create()
        old = ad.action
        if old is not None:
            old.use_fake_user = True  # the replaced action is kept in the file, never lost
        compat.assign_action(obj, action, slot)
    return action, slot


def _escape(name):
    return name.replace("\\", "\\\\").replace('"', '\\"')


def key_with_keyframe_insert(obj, anim, start_frame):
    """The slow reference path (for the benchmark only): keyframe_insert per bone per frame."""
    for t in range(anim.num_frames):
        for b, bname in enumerate(anim.bone_names):
            pb = obj.pose.bones[bname]
            pb.rotation_mode = "QUATERNION"
            pb.rotation_quaternion = anim.quaternions[t, b]
            pb.keyframe_insert("rotation_quaternion", frame=start_frame + t, group=bname)
            if bname in anim.translated:
                pb.location = anim.locations[t, b]
                pb.keyframe_insert("location", frame=start_frame + t, group=bname)

"""Write a TargetAnimation into a NEW action as whole F-curves (foreach_set, not keyframe_insert): a key on every
frame (the exact bake), or with reduce_keys the few Bezier keys retarget.keyreduce finds within a tolerance of it."""
import re

import numpy as np

from . import compat
from ._rt import keyreduce

LINEAR = 1   # Keyframe.interpolation enum value of 'LINEAR'
BEZIER = 2   # ... of 'BEZIER'
ALIGNED = 3  # Keyframe.handle_*_type enum value of 'ALIGNED' (DNA's HD_ALIGN)

ROTATION_TOLERANCE_DEG = 0.5     # per bone, on its channel and on its orientation in the armature
LOCATION_TOLERANCE_M = 0.001     # per bone location, in the rig's world size
# Reduce keys' settings: (degrees per bone, metres per location). Fine is the bake to the eye; the coarser ones leave
# keys near the motion's extremes, for animators who edit the curves.
KEY_DETAIL = {"fine": (ROTATION_TOLERANCE_DEG, LOCATION_TOLERANCE_M), "coarse": (2.0, 0.02), "loose": (4.0, 0.03)}


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


def add_reduced_keys(fc, start_frame, keys, c, sign=1.0):
    """Add channel c of KeyedGroup `keys` to F-curve `fc` after its keys, from start_frame: Bezier keys whose aligned
    handles at a third of each segment make Blender evaluate the very cubic the reduction checked. sign -1 negates
    the values (a quaternion group's other sign: the same rotation)."""
    points = fc.keyframe_points
    n_old, n = len(points), len(keys.frames)
    points.add(n)
    frames = start_frame + keys.frames.astype(np.float64)
    left, right = keys.handles()
    for prop, x, y in (("co", frames, keys.values[:, c]), ("handle_left", frames + left[:, c, 0], left[:, c, 1]),
                       ("handle_right", frames + right[:, c, 0], right[:, c, 1])):
        xy = np.empty(2 * (n_old + n), np.float32)
        points.foreach_get(prop, xy)
        xy[2 * n_old::2], xy[2 * n_old + 1::2] = x, sign * y
        points.foreach_set(prop, xy)
    for prop, value in (("interpolation", BEZIER), ("handle_left_type", ALIGNED), ("handle_right_type", ALIGNED)):
        flags = np.empty(n_old + n, np.int32)
        points.foreach_get(prop, flags)
        flags[n_old:] = value
        points.foreach_set(prop, flags)
    fc.update()


def _write_reduced(fcurves, data_path, index, group, start_frame, keys, c):
    """One new F-curve of KeyedGroup `keys` (channel c), as add_reduced_keys keys it."""
    fc = compat.new_fcurve(fcurves, data_path, index, group)
    add_reduced_keys(fc, start_frame, keys, c)
    return fc


def object_scale(obj):
    """Metres per armature unit: the armature object's (uniform) world scale."""
    return float(np.cbrt(abs(np.linalg.det(np.array(obj.matrix_world)[:3, :3]))))


def reduce_animation(obj, anim, rotation_deg=ROTATION_TOLERANCE_DEG, location_m=LOCATION_TOLERANCE_M):
    """{bone name: (rotation KeyedGroup, location KeyedGroup or None)} for `anim` on armature `obj`."""
    names = [n for n in anim.bone_names if n in obj.data.bones]
    index = {n: i for i, n in enumerate(anim.bone_names)}
    order = []                                      # parents first, as keyreduce bounds orientations down chains
    placed = set()

    def place(name):
        if name in placed:
            return
        parent = obj.data.bones[name].parent
        while parent is not None and parent.name not in index:    # an unkeyed bone in between holds its rest pose
            parent = parent.parent
        if parent is not None:
            place(parent.name)
        placed.add(name)
        order.append((name, parent.name if parent is not None else None))
    for n in names:
        place(n)
    pos = {n: i for i, (n, _) in enumerate(order)}
    cols = [index[n] for n, _ in order]
    translated = set(anim.translated)
    groups = keyreduce.reduce_animation(
        anim.quaternions[:, cols], anim.locations[:, cols], [n in translated for n, _ in order],
        [pos[p] if p is not None else -1 for _, p in order],
        np.array([np.array(obj.data.bones[n].matrix_local)[:3, :3] for n, _ in order]),
        rotation_deg, location_m / object_scale(obj))
    return {n: g for (n, _), g in zip(order, groups)}


def worst_error(obj, anim, reduced):
    """(degrees, metres): the largest rotation and location error of reduced keys (reduce_animation) against the bake
    of `anim`, over every bone and frame, locations in the rig's world size."""
    T, col = anim.num_frames, {n: i for i, n in enumerate(anim.bone_names)}
    deg, metres = 0.0, 0.0
    for name, (rot, loc) in reduced.items():
        b = col[name]
        deg = max(deg, float(keyreduce.rotation_error_deg(rot.evaluate(T), anim.quaternions[:, b]).max()))
        if loc is not None:
            metres = max(metres, float(keyreduce.distance_error(loc.evaluate(T), anim.locations[:, b]).max()))
    return deg, metres * object_scale(obj)


def key_detail(name):
    """(rotation degrees, location metres) of a Reduce keys setting (KEY_DETAIL), or a one-line error."""
    if name not in KEY_DETAIL:
        raise ValueError(f"unknown key detail {name!r}; use one of {', '.join(KEY_DETAIL)}")
    return KEY_DETAIL[name]


def new_action(name, props=None):
    """A new action named `name` (Blender makes the name unique; existing actions stay untouched)."""
    import bpy
    action = bpy.data.actions.new(name=name[:63] or "MotionMill")
    for k, v in (props or {}).items():
        if v is not None:
            action[k] = v
    return action


def key_animation(obj, anim, name, start_frame, props=None, assign=True, reduce_keys=False, constants=(),
                  rotation_deg=ROTATION_TOLERANCE_DEG, location_m=LOCATION_TOLERANCE_M):
    """Key `anim` (retarget.transfer.TargetAnimation) on armature `obj` from `start_frame`: one linear key per frame,
    or with reduce_keys Bezier keys within ROTATION_TOLERANCE_DEG and LOCATION_TOLERANCE_M of that bake.
    constants: (bone, custom property, value) held over the clip (a control rig's IK/FK switches).
    rotation_deg, location_m: the reduction's tolerances (KEY_DETAIL; a control rig's location one is tighter:
    control_rig.location_tolerance). The action records its key count (motionmill_keys) and, reduced, the worst
    error the keys reached against the bake (motionmill_key_error_deg, motionmill_key_error_m).

    Returns (action, slot). With assign=True the action becomes the object's active action; the one it replaces
    is kept (fake user) so nothing is lost. Pose bones of the animation are switched to quaternion rotation."""
    reduced = reduce_animation(obj, anim, rotation_deg, location_m) if reduce_keys else None
    props = dict(props or {})
    props["motionmill_reduced_keys"] = bool(reduce_keys)
    if reduced is not None:
        props["motionmill_key_error_deg"], props["motionmill_key_error_m"] = worst_error(obj, anim, reduced)
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
        if reduced is not None:
            rot, loc = reduced[bname]
            for i in range(4):
                _write_reduced(fcurves, base + ".rotation_quaternion", i, bname, start_frame, rot, i)
            for i in range(3 if loc is not None else 0):
                _write_reduced(fcurves, base + ".location", i, bname, start_frame, loc, i)
            continue
        for i in range(4):
            _write_curve(fcurves, base + ".rotation_quaternion", i, bname, frames, anim.quaternions[:, b, i])
        if bname in translated:
            for i in range(3):
                _write_curve(fcurves, base + ".location", i, bname, frames, anim.locations[:, b, i])
    ends = np.array([frames[0], frames[-1]])
    # a channel the clip leaves unkeyed plays what the rig's other actions key there (the active action pushed down
    # below the clip, or the pose the replaced one left): RobotExpressive's death take, pushed down, carried its
    # head's location into every clip. The clip holds such channels of the bones it drives at rest.
    for bname, channel in sorted(animated_channels(obj)):
        if bname in anim.bone_names and bname in obj.pose.bones and not (channel == "location" and bname in translated):
            for i in range(3):
                _write_curve(fcurves, f'pose.bones["{_escape(bname)}"].{channel}', i, bname, ends,
                             np.full(2, 1.0 if channel == "scale" else 0.0))
    for bname, prop, value in constants:
        _write_curve(fcurves, f'pose.bones["{_escape(bname)}"]["{_escape(prop)}"]', 0, bname, ends,
                     np.full(2, float(value)))
    action["motionmill_keys"] = sum(len(fc.keyframe_points) for fc in compat.all_fcurves(action))
    if reduced is not None:      # the clip's length, even where its last frames need no key of their own
        action.use_frame_range = True
        action.frame_start, action.frame_end = float(frames[0]), float(frames[-1])
    if assign:
        ad = obj.animation_data or obj.animation_data_create()
        old = ad.action
        if old is not None:
            old.use_fake_user = True  # the replaced action is kept in the file, never lost
        compat.assign_action(obj, action, slot)
    return action, slot


_CHANNEL = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(location|scale)$')


def animated_channels(obj):
    """{(bone, "location" | "scale")} that the actions on armature `obj` key: its active action and its NLA strips'."""
    ad = obj.animation_data
    if ad is None:
        return set()
    actions = {ad.action} | {s.action for t in ad.nla_tracks for s in t.strips}
    out = set()
    for action in actions - {None}:
        for fc in compat.all_fcurves(action):
            m = _CHANNEL.match(fc.data_path)
            if m:
                out.add((m.group(1).replace('\\"', '"').replace("\\\\", "\\"), m.group(2)))
    return out


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

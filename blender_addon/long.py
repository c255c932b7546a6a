"""Long motions in Blender: continue a rig's own action with a prompt, and prompt timelines from timeline markers or
a text block of `SECONDS PROMPT` lines. Both go through the backend's long-motion requests ("continue_from",
"timeline") with the request pattern of ops._BackendOp.

Continue reads the rig's evaluated pose back to SMPL-22 (retarget.inverse), writes it as an interchange .npz in the
clips folder and makes a NEW action: a copy of the animator's action, its keys unchanged, followed by the
continuation's keys on the bones the retarget drives. The animator's action is never touched (it is kept with a
fake user, as every operator here keeps a replaced action); Ctrl+Z takes the new action off in one step.
"""
import os
import re
import time

import bpy
import numpy as np
from bpy.props import EnumProperty

from . import apply, compat, control_rig, keying, nla, ops, paths, rig
from ._rt import MotionError, SkeletonError, continuation, interchange, inverse, mapping as mapping_mod

MAX_SEGMENT_S = 10.0                     # one decoding pass (the backend's MAX_SECONDS)
DEFAULT_MARKER = re.compile(r"^F_\d+$")  # the name Blender gives a new marker: not a prompt
LINEAR = 1                               # Keyframe.interpolation enum value of 'LINEAR'


# ------------------------------------------------------------------------------------------ the rig's action as SMPL

def read_pose(scene, obj, frames, skel, mapping):
    """World rotations (T,B,3,3) and heads (T,B,3) of the mapped bones, as Blender evaluates the rig at each frame
    (action, NLA, constraints and drivers included); unmapped bones stay identity / zero (retarget.inverse reads
    only the mapped ones)."""
    names = sorted(set(mapping.roles.values()), key=skel.names.index)
    index = [skel.names.index(n) for n in names]
    bones = [obj.pose.bones[n] for n in names]
    R = np.tile(np.eye(3), (len(frames), len(skel), 1, 1))
    X = np.zeros((len(frames), len(skel), 3))
    keep = scene.frame_current
    try:
        for t, f in enumerate(frames):
            scene.frame_set(f)
            mw = obj.matrix_world
            for i, pb in zip(index, bones):
                m = np.array(mw @ pb.matrix)
                R[t, i], X[t, i] = m[:3, :3], m[:3, 3]
    finally:
        scene.frame_set(keep)
    return R / np.linalg.norm(R, axis=-2, keepdims=True), X


def motion_from_rig(scene, obj, frames):
    """The rig's animation over `frames` as an SMPL-22 Motion at the scene's frame rate (retarget.inverse)."""
    skel = rig.skeleton_from_object(obj)
    mapping = mapping_mod.auto_map(skel)
    mapping.validate(skel)
    R, X = read_pose(scene, obj, frames, skel, mapping)
    return inverse.motion_from_pose(skel, R, X, rig.scene_fps(scene), mapping)


def action_end(action):
    """(first, last) frame of an action: its frame range, and its last key when a manual range stops before it."""
    lo, hi = action.frame_range
    last = [fc.keyframe_points[-1].co[0] for fc in compat.all_fcurves(action) if len(fc.keyframe_points)]
    return int(round(lo)), int(round(max([hi] + last)))


# ------------------------------------------------------------------------------------------ timelines

def text_segments(text):
    """[(seconds, prompt)] from a text block of `SECONDS PROMPT` lines (blank lines and # comments skipped), as the
    backend's timeline files; a one-line ValueError names the line."""
    segments = []
    for n, seconds, prompt, entry in continuation.timeline_lines(text.as_string().splitlines()):
        if seconds is None or not 0 < seconds <= MAX_SEGMENT_S or not prompt.strip():
            raise ValueError(f"text '{text.name}' line {n}: expected `SECONDS PROMPT` with 0-{MAX_SEGMENT_S:g} seconds, "
                             f"e.g. `4 a person walks forward`; got {entry!r}")
        segments.append((seconds, " ".join(prompt.split())))
    if not segments:
        raise ValueError(f"text '{text.name}' has no segments: write one `SECONDS PROMPT` line per segment")
    return segments


def prompt_markers(scene):
    """The scene's timeline markers named with prompts, by frame (Blender's default names F_01... are skipped)."""
    return sorted((m for m in scene.timeline_markers if m.name.strip() and not DEFAULT_MARKER.match(m.name.strip())),
                  key=lambda m: m.frame)


def marker_segments(scene, last_seconds):
    """(first marker's frame, [(seconds, prompt)]): each marker runs until the next, the last for `last_seconds`."""
    marks = prompt_markers(scene)
    if not marks:
        raise ValueError("no timeline markers named with prompts: add markers (M over the timeline) and rename them "
                         "(F2) to what the character does from there")
    fps = rig.scene_fps(scene)
    segments = []
    for a, b in zip(marks, marks[1:] + [None]):
        seconds = float(last_seconds) if b is None else (b.frame - a.frame) / fps
        if b is not None and b.frame == a.frame:
            raise ValueError(f"markers '{a.name}' and '{b.name}' are both on frame {a.frame}: move one")
        if seconds > MAX_SEGMENT_S + 1e-6:
            raise ValueError(f"marker '{a.name}' runs {seconds:.1f} s (frame {a.frame} to {b.frame}); a segment can be at "
                             f"most {MAX_SEGMENT_S:g} s: add a marker in between")
        segments.append((seconds, " ".join(a.name.split())))
    return marks[0].frame, segments


def add_segment_markers(action, start, fps, clip_fps, segment_starts, prompts):
    """A pose marker on `action` at each segment's start (clip frames at clip_fps, the action keyed from `start`)."""
    for f, prompt in zip(segment_starts, prompts):
        m = action.pose_markers.new(prompt[:63])
        m.frame = int(round(start + f * fps / clip_fps))


# ------------------------------------------------------------------------------------------ the continued action

def _slot_of_copy(copy, obj):
    """The copy's slot for the rig (the slot the original plays through), or None before slotted actions."""
    ad = obj.animation_data
    slot = getattr(ad, "action_slot", None)
    if slot is None or not compat.has_slots(copy):
        return compat.ensure_slot(copy, obj)
    return next((s for s in copy.slots if s.identifier == slot.identifier), None) or compat.ensure_slot(copy, obj)


def _freeze_last_key(fc):
    """Keep the curve before its last key as it is when keys are added after it: automatic handles would be
    recomputed from the new neighbour, so the last key's handles become free at their present place."""
    k = fc.keyframe_points[-1]
    if k.handle_left_type in ("AUTO", "AUTO_CLAMPED") or k.handle_right_type in ("AUTO", "AUTO_CLAMPED"):
        left, right = tuple(k.handle_left), tuple(k.handle_right)
        k.handle_left_type = k.handle_right_type = "FREE"
        k.handle_left, k.handle_right = left, right


def _curve_to_extend(fcurves, data_path, index, group, first_frame, hold):
    """The F-curve that keys appended from first_frame extend: the old one, its last key frozen, or a new one
    holding `hold` (the value the channel had) over the old frames, which did not key it."""
    fc = fcurves.find(data_path, index=index)
    if fc is None:
        fc = compat.new_fcurve(fcurves, data_path, index, group)
        fc.keyframe_points.add(1)
        fc.keyframe_points[0].co = (first_frame - 1, hold)
        fc.keyframe_points[0].interpolation = "LINEAR"
    else:
        _freeze_last_key(fc)
    return fc


def _append(fcurves, data_path, index, group, frames, values, hold):
    """Append linear keys to the curve (see _curve_to_extend)."""
    fc = _curve_to_extend(fcurves, data_path, index, group, frames[0], hold)
    points = fc.keyframe_points
    n_old, n = len(points), len(frames)
    points.add(n)
    co = np.empty(2 * (n_old + n), np.float32)
    points.foreach_get("co", co)
    co[2 * n_old::2], co[2 * n_old + 1::2] = frames, values
    points.foreach_set("co", co)
    interp = np.empty(n_old + n, np.int32)
    points.foreach_get("interpolation", interp)
    interp[n_old:] = LINEAR
    points.foreach_set("interpolation", interp)
    fc.update()


def _rotation_channels(pb, q, keep):
    """(data path, (T, C) values) of quaternions q (T,4) in the pose bone's own rotation mode, continuous with the
    value the bone holds now (`keep`: its channels at the action's last frame)."""
    from mathutils import Euler, Quaternion
    mode = pb.rotation_mode
    if mode == "QUATERNION":
        return "rotation_quaternion", q if np.dot(q[0], keep["rotation_quaternion"]) >= 0 else -q
    if mode == "AXIS_ANGLE":
        out = []
        for v in q:
            axis, angle = Quaternion(v).to_axis_angle()
            out.append((angle, *axis))
        return "rotation_axis_angle", np.array(out)
    prev, out = Euler(keep["rotation_euler"], mode), []
    for v in q:
        prev = Quaternion(v).to_euler(mode, prev)
        out.append(tuple(prev))
    return "rotation_euler", np.array(out)


def driven_bones(anim):
    """Bones the retarget moves: a rotation away from rest at some frame, or a keyed location. The others (fingers,
    IK and helper bones) keep holding the old action's last pose."""
    q = anim.quaternions
    moved = np.abs(np.abs(q[..., 0]) - 1.0).max(0) > 1e-9
    return [n for i, n in enumerate(anim.bone_names) if moved[i] or n in anim.translated]


def continue_action(scene, obj, old, end, motion, name, props=None, root_motion="hips", cleanup=False,
                    reduce_keys=False):
    """A new action: a copy of `old` (keys unchanged) followed, from frame end + 1, by `motion` (the backend's
    continuation, in the frame retarget.inverse read `old` into) on the bones the retarget drives. It becomes the
    rig's active action; `old` is kept (fake user). Returns (action, TargetAnimation).
    reduce_keys: the continuation's quaternion and location channels get the few Bezier keys keying.key_animation
    writes (within its tolerances); bones the animator keys in Euler or axis-angle get a key per frame."""
    fps = rig.scene_fps(scene)
    skel = rig.skeleton_from_object(obj)
    mapping = mapping_mod.auto_map(skel)
    ctl = control_rig.for_rig(obj, mapping.roles)   # a control rig continues on the controls its action was keyed on
    controls = old.get("motionmill_controls", scene.motionmill.controls)
    anim = rig.retarget_onto(motion.resample(fps), skel, mapping, ctl, root_motion, cleanup, controls, inverse.ANCHOR)
    switches = ()
    if ctl is not None:
        anim, switches = control_rig.solve_controls(ctl, anim, skel, controls, root_motion, mapping.roles)
    keep = scene.frame_current
    scene.frame_set(end)             # what each channel holds at the end: the value unkeyed channels keep
    held = {pb.name: {"rotation_quaternion": tuple(pb.rotation_quaternion), "rotation_euler": tuple(pb.rotation_euler),
                      "rotation_axis_angle": tuple(pb.rotation_axis_angle), "location": tuple(pb.location)}
            for pb in obj.pose.bones}
    held_switches = [float(obj.pose.bones[b].get(p, v)) for b, p, v in switches]
    scene.frame_set(keep)
    action = old.copy()
    action.name = name[:63]
    action.use_fake_user = False
    for k, v in (props or {}).items():
        action[k] = v
    slot = _slot_of_copy(action, obj)
    fcurves = compat.fcurves_for(action, slot)
    frames = end + 1 + np.arange(anim.num_frames, dtype=np.float64)
    apply.cover_frames(scene, end + 1, frames[-1])
    column = {n: i for i, n in enumerate(anim.bone_names)}
    rotation_deg, location_m = keying.key_detail(scene.motionmill.key_detail)
    if ctl is not None:
        location_m = control_rig.location_tolerance(skel, mapping.roles, rotation_deg, location_m)
    reduced = keying.reduce_animation(obj, anim, rotation_deg, location_m) if reduce_keys else None
    action["motionmill_reduced_keys"] = bool(reduce_keys)
    for (bname, prop, value), hold in zip(switches, held_switches):
        _append(fcurves, f'pose.bones["{keying._escape(bname)}"]["{keying._escape(prop)}"]', 0, bname, frames,
                np.full(len(frames), float(value)), hold)
    if ctl is not None:
        action["motionmill_controls"] = controls
    for bname in (anim.bone_names if ctl is not None else driven_bones(anim)):
        pb = obj.pose.bones.get(bname)
        if pb is None:
            continue
        base = f'pose.bones["{keying._escape(bname)}"]'
        path, values = _rotation_channels(pb, anim.quaternions[:, column[bname]], held[bname])
        if reduced is not None and path == "rotation_quaternion":
            rot, loc = reduced[bname]
            sign = 1.0 if np.dot(rot.values[0], held[bname][path]) >= 0 else -1.0
            for i in range(4):
                fc = _curve_to_extend(fcurves, f"{base}.{path}", i, bname, end + 1, held[bname][path][i])
                keying.add_reduced_keys(fc, end + 1, rot, i, sign)
            for i in range(3 if loc is not None else 0):
                fc = _curve_to_extend(fcurves, f"{base}.location", i, bname, end + 1, held[bname]["location"][i])
                keying.add_reduced_keys(fc, end + 1, loc, i)
            continue
        for i in range(values.shape[1]):
            _append(fcurves, f"{base}.{path}", i, bname, frames, values[:, i], held[bname][path][i])
        if bname in anim.translated:
            for i in range(3):
                _append(fcurves, f"{base}.location", i, bname, frames, anim.locations[:, column[bname], i],
                        held[bname]["location"][i])
    if action.use_frame_range:
        action.frame_end = float(frames[-1])
    old.use_fake_user = True        # the animator's action stays in the file, unchanged
    compat.assign_action(obj, action, slot)
    return action, anim


# ------------------------------------------------------------------------------------------ operators

class MOTIONMILL_OT_continue_action(ops._BackendOp, bpy.types.Operator):
    """Continue the target armature's active action with the prompt: a new action holding the old keys unchanged,
    followed by the continuation (the old action is kept as it is)"""
    bl_idname = "motionmill.continue_action"
    bl_label = "Continue"
    bl_options = {"UNDO"}  # one undo step, and no redo panel: re-running a generation from it would block

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        obj, _ = ops.target_armature(context)
        if obj.animation_data is None or obj.animation_data.action is None:
            cls.poll_message_set(f"'{obj.name}' has no active action to continue: make the action to continue "
                                 "active (Action Editor) or use Generate")
            return False
        return True

    def _begin(self, context):
        s = ops.settings(context)
        prompts = ops.prompt_lines(s)
        if not prompts:
            self.report({"ERROR"}, "the prompt is empty: type what the character should do next")
            return None
        if ops._runtime(context).running:
            self.report({"ERROR"}, "a generation is already running: wait for it or press Cancel")
            return None
        obj, err = ops.target_armature(context)
        if err:
            self.report({"ERROR"}, err)
            return None
        old = obj.animation_data.action if obj.animation_data else None
        if old is None:
            self.report({"ERROR"}, f"'{obj.name}' has no active action to continue: make the action to continue active "
                                   "(Action Editor) or use Generate")
            return None
        lo, hi = action_end(old)
        if hi - lo < 1:
            self.report({"ERROR"}, f"action '{old.name}' spans one frame; continuing needs at least two")
            return None
        try:
            motion = motion_from_rig(context.scene, obj, range(lo, hi + 1))
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", old.name)[:40]
            path = os.path.join(paths.clips_dir(), f"continue-{stem}-{os.getpid()}-{time.time_ns() % 10**12}.npz")
            interchange.save_motion(path, motion, prompt=f"action '{old.name}' of '{obj.name}'")
        except (MotionError, SkeletonError, OSError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return None
        self._old_name, self._end, self._prompt = old.name, hi, prompts[0]
        return self.start_for_target(context, prompts[:1], ops.sampling_options(s, continue_from=path))

    def apply_result(self, context, result):
        obj = bpy.data.objects.get(self._obj_name)
        old = bpy.data.actions.get(self._old_name)
        if obj is None or old is None:
            raise ValueError("the target armature or its action was deleted during generation")
        clip = result["clips"][0]
        s = ops.settings(context)
        root_motion = old.get("motionmill_root_motion", s.root_motion)
        props = {"motionmill_prompt": clip["prompt"], "motionmill_seed": int(clip.get("seed", -1)),
                 "motionmill_model": result.get("model") or "", "motionmill_path": clip["path"],
                 "motionmill_continued_from": old.name, "motionmill_continue_frame": self._end + 1,
                 "motionmill_fps": float(rig.scene_fps(context.scene)), "motionmill_root_motion": root_motion}
        action, anim = continue_action(context.scene, obj, old, self._end, apply.load_motion(clip["path"]),
                                       f"{old.name} + {apply.clip_name(self._prompt)}", props, root_motion,
                                       s.cleanup_feet, s.reduce_keys)
        action.pose_markers.new(self._prompt[:63]).frame = self._end + 1
        apply.add_history(context.scene, action.name, clip["path"], action, clip.get("seed"), result.get("model"),
                          clip["prompt"])
        return 1


class MOTIONMILL_OT_generate_timeline(ops._BackendOp, bpy.types.Operator):
    """One continuous motion from a prompt timeline: timeline markers named with prompts (each runs until the next,
    the last for Seconds), or the Text block's `SECONDS PROMPT` lines from the current frame"""
    bl_idname = "motionmill.generate_timeline"
    bl_label = "Timeline"
    bl_options = {"UNDO"}  # one undo step, and no redo panel: re-running a generation from it would block

    source: EnumProperty(name="Source", default="MARKERS", items=[
        ("MARKERS", "Markers", "Timeline markers named with prompts, from the first marker on"),
        ("TEXT", "Text block", "The Text block's `SECONDS PROMPT` lines, from the current frame")])

    def _begin(self, context):
        s = ops.settings(context)
        if ops._runtime(context).running:
            self.report({"ERROR"}, "a generation is already running: wait for it or press Cancel")
            return None
        try:
            if self.source == "MARKERS":
                start, segments = marker_segments(context.scene, s.seconds)
            elif s.prompt_text is None:
                raise ValueError("no text block: pick a Text with one `SECONDS PROMPT` line per segment")
            else:
                start, segments = context.scene.frame_current, text_segments(s.prompt_text)
        except ValueError as err:
            self.report({"ERROR"}, str(err))
            return None
        self._start, self._segments = start, segments
        options = ops.sampling_options(s, timeline=[{"seconds": sec, "prompt": p} for sec, p in segments])
        options.pop("seconds", None)          # each segment has its own
        return self.start_for_target(context, [], options)

    def apply_result(self, context, result):
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None:
            raise ValueError("the target armature was deleted during generation")
        clip = result["clips"][0]
        s = ops.settings(context)
        motion = apply.load_motion(clip["path"])
        prompts = [p for _, p in self._segments]
        name = apply.clip_name(" | ".join(prompts))
        props = {"motionmill_prompt": clip["prompt"], "motionmill_seed": int(clip.get("seed", -1)),
                 "motionmill_model": result.get("model") or "", "motionmill_path": clip["path"],
                 "motionmill_timeline": "\n".join(f"{sec:g} {p}" for sec, p in self._segments)}
        action, strip, anim = apply.apply_motion(context.scene, obj, motion, name, props, s.root_motion, s.cleanup_feet,
                                                 s.placement, self._start, s.blend_in, s.blend_out)
        if s.placement == "NLA":  # else the animator's active action would hold its pose over the new strip
            nla.push_down_active_action(obj)
        add_segment_markers(action, self._start, rig.scene_fps(context.scene), motion.fps,
                            clip.get("segment_starts") or [0], prompts)
        apply.add_history(context.scene, name, clip["path"], action, clip.get("seed"), result.get("model"),
                          clip["prompt"])
        return 1


CLASSES = (MOTIONMILL_OT_continue_action, MOTIONMILL_OT_generate_timeline)

"""Put a Motion onto an armature: resample to the scene rate, retarget, optional foot cleanup, key a new action,
and either make it the active action at a frame or push it as an NLA strip. Used by every operator."""
import os

from . import control_rig, keying, nla, rig
from ._rt import formats


def load_motion(path):
    return formats.load_any(path)


def clip_name(prompt_or_path):
    text = str(prompt_or_path).strip()
    if os.path.sep in text or text.lower().endswith((".npz", ".npy", ".bvh")):
        text = os.path.splitext(os.path.basename(text))[0]
    return " ".join(text.split())[:63] or "MotionMill"


def apply_motion(scene, obj, motion, name, props=None, root_motion="hips", cleanup=False, placement="INSERT",
                 start=None, blend_in=0.0, blend_out=0.0, reduce_keys=None, controls=None, key_detail=None):
    """-> (action, strip or None, TargetAnimation). Raises MotionError/SkeletonError with one line.

    reduce_keys, key_detail (fine / coarse / loose) and controls (a control rig's fk / ik-legs / ik) None follow the
    panel's Reduce keys, Detail and Controls (scene.motionmill), which the headless batch sets too. On a control rig the keys go on its controls only."""
    if reduce_keys is None:
        reduce_keys = scene.motionmill.reduce_keys
    fps = rig.scene_fps(scene)
    controls = controls or scene.motionmill.controls
    anim, skel, mapping = rig.solve(motion, obj, fps, root_motion=root_motion, cleanup=cleanup, controls=controls)
    switches = ()
    rotation_deg, location_m = keying.key_detail(key_detail or scene.motionmill.key_detail)
    ctl = control_rig.for_rig(obj, mapping.roles)
    if ctl is not None:
        location_m = control_rig.location_tolerance(skel, mapping.roles, rotation_deg, location_m)
        anim, switches = control_rig.solve_controls(ctl, anim, skel, controls, root_motion, mapping.roles)
        props = dict(props or {})
        props["motionmill_controls"] = controls
    start = scene.frame_current if start is None else start
    props = dict(props or {})
    props.setdefault("motionmill_fps", float(fps))
    props["motionmill_root_motion"] = root_motion
    props["motionmill_cleanup_feet"] = bool(cleanup)
    if anim.notes:
        props["motionmill_notes"] = "\n".join(anim.notes)
    cover_frames(scene, start, start + anim.num_frames - 1)
    if placement == "NLA":
        action, slot = keying.key_animation(obj, anim, name, start, props, assign=False,
                                            reduce_keys=reduce_keys, constants=switches,
                                            rotation_deg=rotation_deg, location_m=location_m)
        action.use_fake_user = False
        strip = nla.push_strip(obj, action, slot, start, name, blend_in, blend_out)
        return action, strip, anim
    action, slot = keying.key_animation(obj, anim, name, start, props, assign=True, reduce_keys=reduce_keys,
                                        constants=switches, rotation_deg=rotation_deg,
                                        location_m=location_m)
    return action, None, anim


def cover_frames(scene, first, last):
    """Grow the scene's frame range to hold frames first..last (a new clip, a batch's strips); never shrink it, so
    playback reaches the whole clip."""
    scene.frame_start = min(scene.frame_start, int(first))
    scene.frame_end = max(scene.frame_end, int(round(last)))


def register_clip(scene, path, prompt, seed=None, model=""):
    """List a generated clip in Clips before anything is retargeted: if the retarget fails it stays listed, and the
    next apply of its file (Apply to Rig) fills the entry in instead of adding another."""
    h = _new_entry(scene, clip_name(prompt or path), path, seed, model, prompt)
    h.pending = True
    return h


def add_history(scene, name, path, action, seed=None, model="", prompt=""):
    """The clip's entry in Clips, with its action: the entry register_clip made for `path`, else a new one."""
    history = scene.motionmill.history
    i = next((i for i, h in enumerate(history) if h.pending and path and h.path == path), None)
    if i is None:
        h = _new_entry(scene, name, path, seed, model, prompt)
    else:   # keep what was registered (the prompt, seed, model of the generation) unless told better
        h = history[i]
        scene.motionmill.history_index = i
        if prompt:
            h.name, h.prompt = name, prompt
        if seed is not None:
            h.seed = int(seed)
        h.model = model or h.model
    h.action, h.pending = action, False
    return h


def _new_entry(scene, name, path, seed, model, prompt):
    h = scene.motionmill.history.add()
    h.name = name
    h.prompt = prompt or name
    h.path = path or ""
    h.seed = int(seed) if seed is not None else -1
    h.model = model or ""
    scene.motionmill.history_index = len(scene.motionmill.history) - 1
    return h

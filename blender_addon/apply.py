"""Put a Motion onto an armature: resample to the scene rate, retarget, optional foot cleanup, key a new action,
and either make it the active action at a frame or push it as an NLA strip. Used by every operator."""
import os

from . import keying, nla, rig
from ._rt import formats


def load_motion(path):
    return formats.load_any(path)


def clip_name(prompt_or_path):
    text = str(prompt_or_path).strip()
    if os.path.sep in text or text.lower().endswith((".npz", ".npy", ".bvh")):
        text = os.path.splitext(os.path.basename(text))[0]
    return " ".join(text.split())[:63] or "MotionMill"


def apply_motion(scene, obj, motion, name, props=None, root_motion="hips", cleanup=False, placement="INSERT",
                 start=None, blend_in=0.0, blend_out=0.0, reduce_keys=None):
    """-> (action, strip or None, TargetAnimation). Raises MotionError/SkeletonError with one line.

    reduce_keys None follows the panel's Reduce keys (scene.motionmill), which the headless batch sets too."""
    if reduce_keys is None:
        reduce_keys = scene.motionmill.reduce_keys
    fps = rig.scene_fps(scene)
    anim, skel, mapping = rig.solve(motion, obj, fps, root_motion=root_motion, cleanup=cleanup)
    start = scene.frame_current if start is None else start
    props = dict(props or {})
    props.setdefault("motionmill_fps", float(fps))
    props["motionmill_root_motion"] = root_motion
    props["motionmill_cleanup_feet"] = bool(cleanup)
    if anim.notes:
        props["motionmill_notes"] = "\n".join(anim.notes)
    if placement == "NLA":
        action, slot = keying.key_animation(obj, anim, name, start, props, assign=False,
                                            reduce_keys=reduce_keys)
        action.use_fake_user = False
        strip = nla.push_strip(obj, action, slot, start, name, blend_in, blend_out)
        return action, strip, anim
    action, slot = keying.key_animation(obj, anim, name, start, props, assign=True, reduce_keys=reduce_keys)
    return action, None, anim


def add_history(scene, name, path, action, seed=None, model="", prompt=""):
    h = scene.motionmill.history.add()
    h.name = name
    h.prompt = prompt or name
    h.path = path or ""
    h.seed = int(seed) if seed is not None else -1
    h.model = model or ""
    h.action = action
    scene.motionmill.history_index = len(scene.motionmill.history) - 1
    return h

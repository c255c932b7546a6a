"""Foot cleanup on any rig's existing action: evaluate it, clean it with retarget.feet, key a new action."""
import numpy as np

from . import control_rig, keying, rig
from ._rt import feet, transfer


def anim_from_object(scene, obj, frames):
    names = [b.name for b in obj.pose.bones]
    keep = scene.frame_current
    Q, L = [], []
    for f in frames:
        scene.frame_set(f)
        Q.append([tuple(pb.matrix_basis.to_quaternion()) for pb in obj.pose.bones])
        L.append([tuple(pb.location) for pb in obj.pose.bones])
    scene.frame_set(keep)
    Q, L = np.array(Q), np.array(L)
    moving = tuple(n for i, n in enumerate(names) if np.abs(L[:, i]).max() > 1e-9)
    return transfer.TargetAnimation(tuple(names), transfer.continuous_quaternions(Q), L, moving,
                                    rig.scene_fps(scene))


def cleanup_active_action(scene, obj):
    ad = obj.animation_data
    if ad is None or ad.action is None:
        raise ValueError(f"'{obj.name}' has no active action to clean up")
    old = ad.action
    lo, hi = old.frame_range
    skel = rig.skeleton_from_object(obj)
    mapping = rig.mapping_for(obj, skel)
    if control_rig.for_rig(obj, mapping.roles) is not None:
        raise ValueError(f"'{obj.name}' is a control rig: Clean Up Feet reads keys on the bones it moves; apply the "
                         "clip again with Foot cleanup on, which keys the IK feet flat where they are planted")
    anim = anim_from_object(scene, obj, range(int(lo), int(hi) + 1))
    # bone order of the skeleton (parents first) for the solver
    order = [anim.bone_names.index(n) for n in skel.names]
    anim = transfer.TargetAnimation(skel.names, anim.quaternions[:, order], anim.locations[:, order],
                                    anim.translated, anim.fps)
    clean = feet.cleanup_feet(anim, skel, mapping)
    props = {k: old[k] for k in old.keys() if isinstance(old[k], (str, int, float))}
    props["motionmill_cleanup_feet"] = True
    rotation_deg, location_m = keying.key_detail(scene.motionmill.key_detail)
    action, _ = keying.key_animation(obj, clean, old.name + " feet", int(lo), props, assign=True,
                                     reduce_keys=scene.motionmill.reduce_keys, rotation_deg=rotation_deg,
                                     location_m=location_m)
    return action

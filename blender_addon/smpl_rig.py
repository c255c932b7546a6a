"""The preview SMPL-22 armature (y-up armature space turned into Blender's z-up by the object transform) and
reading an SMPL armature's animation back into a Motion."""
import glob
import os

import bpy
import numpy as np
from mathutils import Matrix

from ._rt import motion as motion_mod, skeleton, smpl

HAND_TO_WRIST = {22: 20, 23: 21}


def rest_heads(offsets=None, parents=smpl.PARENTS):
    off = smpl.REST_OFFSETS if offsets is None else offsets
    heads = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        heads[j] = off[j] if p < 0 else heads[p] + off[j]
    return heads


def add_smpl_armature(context, smpl_model_dir="", name="SMPL"):
    """-> (object, note about the body mesh)."""
    heads = rest_heads()
    heads[:, 1] -= heads[:, 1].min() - 0.02      # stand on the floor (y up in armature space; ankles above it)
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    context.scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(skeleton.motion_to_zup().tolist())
    prev_active = context.view_layer.objects.active
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    ebs = []
    children = [[c for c, q in enumerate(smpl.PARENTS) if q == j] for j in range(len(smpl.PARENTS))]
    for j, jname in enumerate(smpl.JOINT_NAMES):
        eb = arm.edit_bones.new(jname)
        eb.head = tuple(heads[j])
        if children[j]:
            tail = heads[children[j][0]] if len(children[j]) == 1 or j != 9 else heads[12]
        else:
            d = smpl.REST_OFFSETS[j]
            tail = heads[j] + 0.5 * d if np.linalg.norm(d) > 1e-6 else heads[j] + [0, 0.1, 0]
        if np.linalg.norm(np.asarray(tail) - heads[j]) < 1e-3:
            tail = heads[j] + np.array([0, 0.05, 0])
        eb.tail = tuple(tail)
        if smpl.PARENTS[j] >= 0:
            eb.parent = ebs[smpl.PARENTS[j]]
        ebs.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    note = _add_body(context, obj, smpl_model_dir)
    if prev_active is not None:
        context.view_layer.objects.active = obj
    return obj, note


def _add_body(context, obj, model_dir):
    if not model_dir:
        return "no SMPL model files set in the preferences: added the skeleton only (no body mesh)"
    files = sorted(glob.glob(os.path.join(bpy.path.abspath(model_dir), "SMPL*_NEUTRAL*.npz")))
    if not files:
        return f"no SMPL_NEUTRAL.npz in {model_dir}: added the skeleton only (no body mesh)"
    data = np.load(files[0], allow_pickle=False)
    verts, faces, weights = data["v_template"], data["f"], data["weights"]
    mesh = bpy.data.meshes.new("SMPL body")
    mesh.from_pydata(verts.tolist(), [], faces.astype(int).tolist())
    body = bpy.data.objects.new("SMPL body", mesh)
    context.scene.collection.objects.link(body)
    body.parent = obj
    W = np.zeros((len(verts), 22))
    for c in range(weights.shape[1]):
        j = c if c < 22 else HAND_TO_WRIST.get(c, 15 if c < 25 else (20 if c < 40 else 21))
        W[:, j] += weights[:, c]
    for j, jname in enumerate(smpl.JOINT_NAMES):
        vg = body.vertex_groups.new(name=jname)
        for v in np.flatnonzero(W[:, j] > 1e-4):
            vg.add([int(v)], float(W[v, j]), "REPLACE")
    mod = body.modifiers.new("Armature", "ARMATURE")
    mod.object = obj
    return f"with the body mesh from {os.path.basename(files[0])}"


def motion_from_armature(scene, obj, frames=None):
    """An SMPL-22-named armature's animation (evaluated with frame_set) -> Motion at the scene's frame rate."""
    names = smpl.JOINT_NAMES
    missing = [n for n in names if n not in obj.pose.bones]
    if missing:
        raise ValueError(f"'{obj.name}' is not an SMPL armature: no bone {missing[0]!r}")
    ad = obj.animation_data
    if ad is None or (ad.action is None and not len(ad.nla_tracks)):
        raise ValueError(f"'{obj.name}' has no animation to retarget")
    if frames is None:
        lo, hi = ad.action.frame_range if ad.action else (scene.frame_start, scene.frame_end)
        frames = range(int(lo), int(hi) + 1)
    C = skeleton.motion_to_zup()[:3, :3]
    mw = np.array(obj.matrix_world)
    rot = mw[:3, :3] / np.cbrt(np.linalg.det(mw[:3, :3]))
    G = np.array([rot @ np.array(obj.data.bones[n].matrix_local)[:3, :3] for n in names])
    rest = np.array([np.array(obj.data.bones[n].head_local) for n in names])
    offsets = np.array([rest[j] - (rest[p] if p >= 0 else 0) for j, p in enumerate(smpl.PARENTS)])
    offsets[0] = rest[0]
    keep = scene.frame_current
    R, trans = [], []
    for f in frames:
        scene.frame_set(f)
        W = np.array([np.array(obj.matrix_world @ obj.pose.bones[n].matrix)[:3, :3] for n in names])
        W = W / np.linalg.norm(W, axis=1, keepdims=True)
        E = C.T @ (W @ np.swapaxes(G, 1, 2)) @ C       # world deltas in y-up
        local = np.array([E[j] if p < 0 else E[p].T @ E[j] for j, p in enumerate(smpl.PARENTS)])
        R.append(local)
        head = np.array(obj.matrix_world @ obj.pose.bones[names[0]].head)
        trans.append(C.T @ (head - mw[:3, 3]) / np.cbrt(np.linalg.det(mw[:3, :3])))
    scene.frame_set(keep)
    fps = scene.render.fps / scene.render.fps_base
    return motion_mod.Motion(np.array(R), np.array(trans), fps, offsets=offsets)

"""Real Blender rigs for the retarget tests, built with bpy, and the bpy -> retarget.Skeleton extraction.

Every builder returns an armature object in the current scene, with non-zero bone rolls. Body layout:
Blender convention, character facing -Y, +X its left, z up, metres, feet on z = 0 (before object transform).
"""
import math

import bpy
import numpy as np

from retarget.skeleton import Skeleton

ROLL_SEED = 7


def clear_scene():
    for o in list(bpy.data.objects):
        bpy.data.objects.remove(o, do_unlink=True)
    for a in list(bpy.data.armatures):
        bpy.data.armatures.remove(a)
    for a in list(bpy.data.actions):
        bpy.data.actions.remove(a)


def skeleton_from_object(obj):
    """Read an armature object into a Skeleton: names, parents (parents first), bone.matrix_local, lengths, matrix_world."""
    order = []

    def visit(b):
        order.append(b)
        for c in b.children:
            visit(c)
    for b in obj.data.bones:
        if b.parent is None:
            visit(b)
    index = {b.name: i for i, b in enumerate(order)}
    return Skeleton([b.name for b in order],
                    [index[b.parent.name] if b.parent else -1 for b in order],
                    np.array([np.array(b.matrix_local) for b in order]),
                    np.array([b.length for b in order]),
                    np.array(obj.matrix_world))


def apply_frame(obj, anim, frame):
    """Set pose channels of one frame of a TargetAnimation exactly as the add-on keys them."""
    for i, name in enumerate(anim.bone_names):
        pb = obj.pose.bones[name]
        pb.rotation_mode = "QUATERNION"
        pb.rotation_quaternion = tuple(anim.quaternions[frame, i])
        pb.location = tuple(anim.locations[frame, i])
    bpy.context.view_layer.update()


def read_world_pose(obj, names):
    """World matrices (B,4,4) of the posed bones: obj.matrix_world @ pose_bone.matrix."""
    mw = obj.matrix_world
    return np.array([np.array(mw @ obj.pose.bones[n].matrix) for n in names])


# ------------------------------------------------------------------------------------------ layout

def human_joints(height=1.75, head_scale=1.0, arm_down_deg=0.0, leg_scale=1.0):
    """Joint positions (z up, facing -Y, +X = left) of a simple humanoid; dict name -> (3,)."""
    s = height / 1.80
    J = {}
    hip_z = 0.93 * s * leg_scale
    J["pelvis"] = (0, 0.0, hip_z + 0.03 * s)
    J["spine1"] = (0, 0.0, hip_z + 0.13 * s)
    J["spine2"] = (0, 0.0, hip_z + 0.26 * s)
    J["spine3"] = (0, 0.01, hip_z + 0.39 * s)
    J["neck"] = (0, 0.01, hip_z + 0.57 * s)
    J["head"] = (0, 0.0, hip_z + 0.66 * s)
    J["head_end"] = (0, 0.0, hip_z + (0.66 + 0.22 * head_scale) * s)
    sh_z = hip_z + 0.52 * s
    a = math.radians(arm_down_deg)
    for side, sx in (("left", 1), ("right", -1)):
        J[f"{side}_collar"] = (sx * 0.03 * s, 0.0, sh_z)
        sh = np.array([sx * 0.18 * s, 0.02 * s, sh_z])
        J[f"{side}_shoulder"] = sh
        for name, dist in (("elbow", 0.28), ("wrist", 0.54), ("hand_end", 0.64)):
            J[f"{side}_{name}"] = sh + dist * s * np.array([sx * math.cos(a), 0.0, -math.sin(a)]) + np.array([0, 0.01 * s if name != "elbow" else 0.025 * s, 0])
        J[f"{side}_hip"] = (sx * 0.09 * s, 0.0, hip_z)
        J[f"{side}_knee"] = (sx * 0.10 * s, -0.015 * s, hip_z - 0.43 * s * leg_scale)
        J[f"{side}_ankle"] = (sx * 0.11 * s, 0.03 * s, 0.09 * s)
        J[f"{side}_toe"] = (sx * 0.12 * s, -0.10 * s, 0.025 * s)
        J[f"{side}_toe_end"] = (sx * 0.12 * s, -0.17 * s, 0.02 * s)
    return {k: np.asarray(v, float) for k, v in J.items()}


def build_armature(name, bones, object_matrix=None, to_armature=None, roll_seed=ROLL_SEED):
    """bones: list of (name, parent, head, tail) in WORLD metres; to_armature maps world points into armature space.

    Each bone gets a random non-zero roll (0.3..2.8 rad, random sign).
    """
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    if object_matrix is not None:
        from mathutils import Matrix
        obj.matrix_world = Matrix([list(r) for r in object_matrix])
    bpy.context.view_layer.objects.active = obj
    for o in bpy.context.selected_objects:
        o.select_set(False)
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    rng = np.random.default_rng(roll_seed)
    ebs = {}
    conv = to_armature or (lambda p: p)
    for bname, parent, head, tail in bones:
        eb = arm.edit_bones.new(bname)
        eb.head = tuple(conv(np.asarray(head, float)))
        eb.tail = tuple(conv(np.asarray(tail, float)))
        eb.roll = float(rng.uniform(0.3, 2.8) * rng.choice([-1, 1]))
        if parent:
            eb.parent = ebs[parent]
        ebs[bname] = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def add_rolls(obj, roll_seed=ROLL_SEED):
    """Give every bone of an existing armature an extra random non-zero roll."""
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rng = np.random.default_rng(roll_seed)
    for eb in obj.data.edit_bones:
        eb.roll += float(rng.uniform(0.3, 2.8) * rng.choice([-1, 1]))
    bpy.ops.object.mode_set(mode="OBJECT")


# ------------------------------------------------------------------------------------------ rigs

def mixamo_rig(prefix="mixamorig:", names=None):
    """A Mixamo character as Blender's FBX importer leaves it: object rotated 90 deg about X, scale 0.01, bones in cm."""
    J = human_joints(1.70)
    p = prefix
    side = {"left": "Left", "right": "Right"}
    bones = [(p + "Hips", None, J["pelvis"], J["spine1"]),
             (p + "Spine", p + "Hips", J["spine1"], J["spine2"]),
             (p + "Spine1", p + "Spine", J["spine2"], J["spine3"]),
             (p + "Spine2", p + "Spine1", J["spine3"], J["neck"]),
             (p + "Neck", p + "Spine2", J["neck"], J["head"]),
             (p + "Head", p + "Neck", J["head"], J["head_end"]),
             (p + "HeadTop_End", p + "Head", J["head_end"], J["head_end"] + [0, 0, 0.05])]
    for s, S in side.items():
        bones += [(p + f"{S}Shoulder", p + "Spine2", J[f"{s}_collar"], J[f"{s}_shoulder"]),
                  (p + f"{S}Arm", p + f"{S}Shoulder", J[f"{s}_shoulder"], J[f"{s}_elbow"]),
                  (p + f"{S}ForeArm", p + f"{S}Arm", J[f"{s}_elbow"], J[f"{s}_wrist"]),
                  (p + f"{S}Hand", p + f"{S}ForeArm", J[f"{s}_wrist"], J[f"{s}_hand_end"]),
                  (p + f"{S}UpLeg", p + "Hips", J[f"{s}_hip"], J[f"{s}_knee"]),
                  (p + f"{S}Leg", p + f"{S}UpLeg", J[f"{s}_knee"], J[f"{s}_ankle"]),
                  (p + f"{S}Foot", p + f"{S}Leg", J[f"{s}_ankle"], J[f"{s}_toe"]),
                  (p + f"{S}ToeBase", p + f"{S}Foot", J[f"{s}_toe"], J[f"{s}_toe_end"]),
                  (p + f"{S}Toe_End", p + f"{S}ToeBase", J[f"{s}_toe_end"], J[f"{s}_toe_end"] + [0, -0.03, 0])]
    if names is not None:  # rename (for the structural fallback test)
        bones = [(names.get(n, n), names.get(par, par) if par else None, h, t) for n, par, h, t in bones]
    obj_m = np.diag([0.01, 0.01, 0.01, 1.0]) @ np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    inv = np.linalg.inv(obj_m)
    return build_armature("Mixamo", bones, obj_m, lambda x: (inv @ np.r_[x, 1.0])[:3])


def ue5_rig():
    """UE5 mannequin naming in A-pose: root at the ground, pelvis, spine_01..05, neck_01/02, twist and IK bones."""
    J = human_joints(1.80, arm_down_deg=45.0)
    sp = [J["pelvis"] + (J["neck"] - J["pelvis"]) * k / 6.0 for k in range(7)]
    bones = [("root", None, [0, 0, 0], [0, -0.2, 0]),
             ("pelvis", "root", sp[0], sp[1])]
    prev = "pelvis"
    for k in range(1, 6):
        bones.append((f"spine_0{k}", prev, sp[k], sp[k + 1]))
        prev = f"spine_0{k}"
    mid_neck = (J["neck"] + J["head"]) / 2
    bones += [("neck_01", "spine_05", J["neck"], mid_neck), ("neck_02", "neck_01", mid_neck, J["head"]),
              ("head", "neck_02", J["head"], J["head_end"])]
    for s, x in (("left", "l"), ("right", "r")):
        el, wr = J[f"{s}_elbow"], J[f"{s}_wrist"]
        sh = J[f"{s}_shoulder"]
        bones += [(f"clavicle_{x}", "spine_05", J[f"{s}_collar"], sh),
                  (f"upperarm_{x}", f"clavicle_{x}", sh, el),
                  (f"upperarm_twist_01_{x}", f"upperarm_{x}", (sh + el) / 2, el),
                  (f"lowerarm_{x}", f"upperarm_{x}", el, wr),
                  (f"lowerarm_twist_01_{x}", f"lowerarm_{x}", (el + wr) / 2, wr),
                  (f"hand_{x}", f"lowerarm_{x}", wr, J[f"{s}_hand_end"]),
                  (f"thigh_{x}", "pelvis", J[f"{s}_hip"], J[f"{s}_knee"]),
                  (f"thigh_twist_01_{x}", f"thigh_{x}", (J[f"{s}_hip"] + J[f"{s}_knee"]) / 2, J[f"{s}_knee"]),
                  (f"calf_{x}", f"thigh_{x}", J[f"{s}_knee"], J[f"{s}_ankle"]),
                  (f"calf_twist_01_{x}", f"calf_{x}", (J[f"{s}_knee"] + J[f"{s}_ankle"]) / 2, J[f"{s}_ankle"]),
                  (f"foot_{x}", f"calf_{x}", J[f"{s}_ankle"], J[f"{s}_toe"]),
                  (f"ball_{x}", f"foot_{x}", J[f"{s}_toe"], J[f"{s}_toe_end"])]
    bones += [("ik_foot_root", "root", [0, 0, 0], [0, 0, 0.1]),
              ("ik_foot_l", "ik_foot_root", J["left_ankle"], J["left_toe"]),
              ("ik_foot_r", "ik_foot_root", J["right_ankle"], J["right_toe"]),
              ("ik_hand_root", "root", [0, 0, 0], [0, 0, 0.1]),
              ("ik_hand_gun", "ik_hand_root", J["right_wrist"], J["right_hand_end"]),
              ("ik_hand_l", "ik_hand_gun", J["left_wrist"], J["left_hand_end"]),
              ("ik_hand_r", "ik_hand_gun", J["right_wrist"], J["right_hand_end"])]
    return build_armature("UE5", bones)


def vrm_rig():
    """A short (1.2 m), big-headed VRoid-style character with J_Bip_* names, T-pose."""
    J = human_joints(1.20, head_scale=2.2, leg_scale=0.85)
    bones = [("Root", None, [0, 0, 0], [0, 0, 0.1]),
             ("J_Bip_C_Hips", "Root", J["pelvis"], J["spine1"]),
             ("J_Bip_C_Spine", "J_Bip_C_Hips", J["spine1"], J["spine2"]),
             ("J_Bip_C_Chest", "J_Bip_C_Spine", J["spine2"], J["spine3"]),
             ("J_Bip_C_UpperChest", "J_Bip_C_Chest", J["spine3"], J["neck"]),
             ("J_Bip_C_Neck", "J_Bip_C_UpperChest", J["neck"], J["head"]),
             ("J_Bip_C_Head", "J_Bip_C_Neck", J["head"], J["head_end"])]
    for s, S in (("left", "L"), ("right", "R")):
        bones += [(f"J_Bip_{S}_Shoulder", "J_Bip_C_UpperChest", J[f"{s}_collar"], J[f"{s}_shoulder"]),
                  (f"J_Bip_{S}_UpperArm", f"J_Bip_{S}_Shoulder", J[f"{s}_shoulder"], J[f"{s}_elbow"]),
                  (f"J_Bip_{S}_LowerArm", f"J_Bip_{S}_UpperArm", J[f"{s}_elbow"], J[f"{s}_wrist"]),
                  (f"J_Bip_{S}_Hand", f"J_Bip_{S}_LowerArm", J[f"{s}_wrist"], J[f"{s}_hand_end"]),
                  (f"J_Bip_{S}_UpperLeg", "J_Bip_C_Hips", J[f"{s}_hip"], J[f"{s}_knee"]),
                  (f"J_Bip_{S}_LowerLeg", f"J_Bip_{S}_UpperLeg", J[f"{s}_knee"], J[f"{s}_ankle"]),
                  (f"J_Bip_{S}_Foot", f"J_Bip_{S}_LowerLeg", J[f"{s}_ankle"], J[f"{s}_toe"]),
                  (f"J_Bip_{S}_ToeBase", f"J_Bip_{S}_Foot", J[f"{s}_toe"], J[f"{s}_toe_end"])]
    return build_armature("VRM", bones)


def daz_g8_rig():
    """Daz Genesis 8 naming (hip, pelvis, abdomenLower..chestUpper, lThighBend/lThighTwist, lShldrBend/Twist), A-pose."""
    J = human_joints(1.75, arm_down_deg=40.0)
    sp = [J["spine1"] + (J["neck"] - J["spine1"]) * k / 4.0 for k in range(5)]
    mid_neck = (J["neck"] + J["head"]) / 2
    bones = [("hip", None, J["pelvis"], J["spine1"]),
             ("pelvis", "hip", J["pelvis"], J["pelvis"] - [0, 0, 0.1]),
             ("abdomenLower", "hip", sp[0], sp[1]), ("abdomenUpper", "abdomenLower", sp[1], sp[2]),
             ("chestLower", "abdomenUpper", sp[2], sp[3]), ("chestUpper", "chestLower", sp[3], sp[4]),
             ("neckLower", "chestUpper", J["neck"], mid_neck), ("neckUpper", "neckLower", mid_neck, J["head"]),
             ("head", "neckUpper", J["head"], J["head_end"])]
    for s, x in (("left", "l"), ("right", "r")):
        sh, el, wr = J[f"{s}_shoulder"], J[f"{s}_elbow"], J[f"{s}_wrist"]
        hp, kn = J[f"{s}_hip"], J[f"{s}_knee"]
        meta = (J[f"{s}_ankle"] + J[f"{s}_toe"]) / 2
        bones += [(f"{x}Collar", "chestUpper", J[f"{s}_collar"], sh),
                  (f"{x}ShldrBend", f"{x}Collar", sh, (sh + el) / 2), (f"{x}ShldrTwist", f"{x}ShldrBend", (sh + el) / 2, el),
                  (f"{x}ForearmBend", f"{x}ShldrTwist", el, (el + wr) / 2), (f"{x}ForearmTwist", f"{x}ForearmBend", (el + wr) / 2, wr),
                  (f"{x}Hand", f"{x}ForearmTwist", wr, J[f"{s}_hand_end"]),
                  (f"{x}ThighBend", "pelvis", hp, (hp + kn) / 2), (f"{x}ThighTwist", f"{x}ThighBend", (hp + kn) / 2, kn),
                  (f"{x}Shin", f"{x}ThighTwist", kn, J[f"{s}_ankle"]),
                  (f"{x}Foot", f"{x}Shin", J[f"{s}_ankle"], meta), (f"{x}Metatarsals", f"{x}Foot", meta, J[f"{s}_toe"]),
                  (f"{x}Toe", f"{x}Metatarsals", J[f"{s}_toe"], J[f"{s}_toe_end"])]
    return build_armature("DazG8", bones)


def rigify_metarig():
    """Blender's own Rigify human metarig (rigify add-on), with extra rolls on every bone."""
    bpy.ops.preferences.addon_enable(module="rigify")
    bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.object
    add_rolls(obj)
    return obj


def bvh_rig(path):
    """The armature Blender's BVH importer builds from a file (its rest pose), with extra rolls."""
    bpy.ops.import_anim.bvh(filepath=str(path))
    obj = bpy.context.object
    obj.animation_data_clear()
    add_rolls(obj)
    return obj


RIGS = {"mixamo": mixamo_rig, "ue5": ue5_rig, "vrm": vrm_rig, "daz_g8": daz_g8_rig, "rigify": rigify_metarig}


# ------------------------------------------------------------------------------ rigs as importers deliver them

def _only_selected(obj):
    bpy.context.view_layer.objects.active = obj
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj or o.parent == obj)


def _imported_armature(before):
    new = [o for o in bpy.data.objects if o.name not in before and o.type == "ARMATURE"]
    if len(new) != 1:
        raise RuntimeError(f"the importer made {len(new)} armatures, expected one")
    return new[0]


def gltf_round_trip(obj, folder, bone_heuristic="BLENDER"):
    """Export `obj` with Blender's glTF exporter (defaults) and import it back with `bone_heuristic`
    (BLENDER, the importer's default, or TEMPERANCE / FORTUNE); the scene keeps only the imported objects.

    glTF stores joints, not bones, so the importer invents every tail: under the 0.01 scale of a Mixamo-style rig
    BLENDER's guesses come out metres long, as they do on real .glb characters."""
    path = str(folder / f"{obj.name}.glb")
    _only_selected(obj)
    bpy.ops.export_scene.gltf(filepath=path, use_selection=True)
    clear_scene()
    bpy.ops.import_scene.gltf(filepath=path, bone_heuristic=bone_heuristic)
    return _imported_armature(())


def fbx_round_trip(obj, folder, automatic_bone_orientation=False):
    """Export `obj` with io_scene_fbx (defaults: leaf '_end' bones added) and import it back."""
    path = str(folder / f"{obj.name}.fbx")
    _only_selected(obj)
    bpy.ops.export_scene.fbx(filepath=path, use_selection=True, object_types={"ARMATURE", "MESH"})
    clear_scene()
    bpy.ops.import_scene.fbx(filepath=path, automatic_bone_orientation=automatic_bone_orientation)
    return _imported_armature(())


def scramble_tails(obj, seed=3):
    """Keep every bone head, give every tail a random direction and a random length (1 cm to 40 m in the world),
    and recompute the rolls: real files carry any tails at all, so nothing may depend on them."""
    rng = np.random.default_rng(seed)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    ebs = obj.data.edit_bones
    for eb in ebs:
        eb.use_connect = False  # a connected child's head follows its parent's tail; heads must stay put
    heads = {eb.name: eb.head.copy() for eb in ebs}
    scale = float(np.cbrt(abs(np.linalg.det(np.array(obj.matrix_world)[:3, :3]))))
    for eb in ebs:
        d = rng.normal(size=3)
        eb.tail = heads[eb.name] + type(eb.head)(d / np.linalg.norm(d) * 10 ** rng.uniform(-2, np.log10(40)) / scale)
        eb.head = heads[eb.name]
        eb.roll = float(rng.uniform(-np.pi, np.pi))
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


VARIANTS = ("gltf", "gltf_temperance", "gltf_fortune", "fbx", "fbx_auto_orient", "scrambled")


def variant(name, rig, folder):
    """Build rig `rig` (a RIGS key) and deliver it as variant `name` (a VARIANTS key, or 'original')."""
    clear_scene()
    obj = RIGS[rig]()
    if name == "original":
        return obj
    if name.startswith("gltf"):
        return gltf_round_trip(obj, folder, {"gltf": "BLENDER"}.get(name, name[5:].upper()))
    if name.startswith("fbx"):
        return fbx_round_trip(obj, folder, automatic_bone_orientation=name == "fbx_auto_orient")
    if name == "scrambled":
        return scramble_tails(obj)
    raise KeyError(name)


# ------------------------------------------------------------------------------ Rigify, generated as users do

def generate_rigify_human(path):
    """Blender's human metarig, generated by the bundled Rigify, saved at `path` (30 fps, from frame 1)."""
    import addon_utils
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    # Generating also runs the rig's UI script, which registers its panels and operators (named with the rig_id)
    # outside addon_utils: the bpy 4.5 module then hangs at interpreter exit. The tests need the rig, not its UI.
    rig_id = bpy.data.objects["rig"].data["rig_id"]
    for name in [n for n in dir(bpy.types) if n.endswith("_" + rig_id)]:
        bpy.utils.unregister_class(getattr(bpy.types, name))
    bpy.data.objects.remove(bpy.data.objects["metarig"])
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def bone_under(bone, name):
    """Whether `bone` is the bone named `name` or hangs below it."""
    while bone is not None:
        if bone.name == name:
            return True
        bone = bone.parent
    return False


def skin_a_body(rig):
    """A mesh bound to the rig's DEF bones, as a character's body is: a box around every body DEF bone, joined into
    one mesh, weighted fully to its bone (vertex groups named after the bones, an Armature modifier)."""
    import bmesh
    from mathutils import Matrix, Vector
    mesh = bpy.data.meshes.new("Body")
    body = bpy.data.objects.new("Body", mesh)
    bpy.context.scene.collection.objects.link(body)
    bm = bmesh.new()
    import re
    body_part = re.compile(r"^DEF-(spine|shoulder|upper_arm|forearm|hand|thigh|shin|foot|toe)")
    deform = [b for b in rig.data.bones if body_part.match(b.name)]
    owners = []
    for b in deform:
        r = 0.25 * b.length + 0.01
        geom = bmesh.ops.create_cube(bm, size=1.0)["verts"]
        m = Matrix.Translation(b.head_local + (b.tail_local - b.head_local) / 2) @ b.matrix_local.to_3x3().to_4x4() @ \
            Matrix.Diagonal(Vector((2 * r, b.length, 2 * r, 1.0)))
        bmesh.ops.transform(bm, matrix=m, verts=geom)
        owners += [b.name] * len(geom)
    bm.to_mesh(mesh)
    bm.free()
    groups = {n: body.vertex_groups.new(name=n) for n in {b.name for b in deform}}
    for i, n in enumerate(owners):
        groups[n].add([i], 1.0, "REPLACE")
    body.matrix_world = rig.matrix_world
    mod = body.modifiers.new("Armature", "ARMATURE")
    mod.object = rig
    return body

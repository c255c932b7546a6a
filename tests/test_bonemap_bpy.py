"""The bone-map editor, its presets, multi-file import and drag and drop, in real bpy (5.0, and 4.2/4.5 in CI).

A rig with its own bone names and arms hanging down in its rest pose: the auto-map knows none of the names and the
rig's structure does not show its arms, so the retarget refuses it. It is mapped by hand through the panel's
operators, saved as a preset, and a second rig with the same bone names is then retargeted with no hand work."""
import os
import types

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import rigs  # noqa: E402  (tests/rigs.py)
from conftest import shared_path  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import bonemap, rig as mm_rig, ui_bonemap  # noqa: E402
from retarget import formats  # noqa: E402
from retarget.mapping import Mapping  # noqa: E402
from retarget.transfer import pose_world, retarget  # noqa: E402

CLIP = ("data", "motion272", "amass_000000_motion.npz")
CENTRE = {"pelvis": "Becken", "spine1": "Bauch", "spine2": "Brust", "spine3": "Brustkorb", "neck": "Hals",
          "head": "Kopf"}
SIDED = {"collar": "Schluesselbein", "shoulder": "Oberarm", "elbow": "Unterarm", "wrist": "Handgelenk",
         "hip": "Oberschenkel", "knee": "Schienbein", "ankle": "Fuss", "foot": "Zehen"}
EXPECTED = dict(CENTRE, **{f"{s}_{k}": f"{v}.{s[0].upper()}" for s in ("left", "right") for k, v in SIDED.items()})


@pytest.fixture(scope="module", autouse=True)
def addon():
    blender_addon.register()
    yield
    blender_addon.unregister()


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONMILL_DATA", str(tmp_path / "data"))
    rigs.clear_scene()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_current = 1
    s = scene.motionmill
    s.cleanup_feet, s.placement, s.root_motion = False, "INSERT", "hips"
    s.reduce_keys = False              # _check_pose compares with the exact bake
    s.history.clear()
    yield tmp_path / "data"
    rigs.clear_scene()


def german_rig(name="Figur", object_matrix=None):
    """A rig named in German, arms hanging down (85 degrees) in its rest pose."""
    J = rigs.human_joints(1.75, arm_down_deg=85.0)
    bones = [("Becken", None, J["pelvis"], J["spine1"]), ("Bauch", "Becken", J["spine1"], J["spine2"]),
             ("Brust", "Bauch", J["spine2"], J["spine3"]), ("Brustkorb", "Brust", J["spine3"], J["neck"]),
             ("Hals", "Brustkorb", J["neck"], J["head"]), ("Kopf", "Hals", J["head"], J["head_end"])]
    for s in ("left", "right"):
        def n(k):
            return f"{SIDED[k]}.{s[0].upper()}"
        bones += [(n("collar"), "Brustkorb", J[f"{s}_collar"], J[f"{s}_shoulder"]),
                  (n("shoulder"), n("collar"), J[f"{s}_shoulder"], J[f"{s}_elbow"]),
                  (n("elbow"), n("shoulder"), J[f"{s}_elbow"], J[f"{s}_wrist"]),
                  (n("wrist"), n("elbow"), J[f"{s}_wrist"], J[f"{s}_hand_end"]),
                  (n("hip"), "Becken", J[f"{s}_hip"], J[f"{s}_knee"]),
                  (n("knee"), n("hip"), J[f"{s}_knee"], J[f"{s}_ankle"]),
                  (n("ankle"), n("knee"), J[f"{s}_ankle"], J[f"{s}_toe"]),
                  (n("foot"), n("ankle"), J[f"{s}_toe"], J[f"{s}_toe_end"])]
    inv = np.linalg.inv(object_matrix) if object_matrix is not None else np.eye(4)
    return rigs.build_armature(name, bones, object_matrix, lambda x: (inv @ np.r_[x, 1.0])[:3])


def _target(obj):
    bpy.context.scene.motionmill.target = obj
    bpy.context.view_layer.objects.active = obj
    return obj


def _use_active(obj, role, bone):
    obj.data.bones.active = obj.data.bones[bone]
    assert bpy.ops.motionmill.bone_map_use_active(role=role) == {"FINISHED"}


def _roles(obj):
    return {e.name: e.bone for e in obj.data.motionmill_bone_map.roles if e.bone}


def _check_pose(obj, expected, frames=(0, 30, 60)):
    """The keyed action, evaluated by Blender, is retarget's own pose for the rig mapped by `expected`."""
    motion = formats.load_any(str(shared_path(*CLIP))).resample(24.0)
    skel = mm_rig.skeleton_from_object(obj)
    R, X = pose_world(retarget(motion, skel, Mapping(expected)), skel)
    start = int(obj.animation_data.action.frame_range[0])
    for f in frames:
        bpy.context.scene.frame_set(start + f)
        W = rigs.read_world_pose(obj, skel.names)
        np.testing.assert_allclose(W[:, :3, 3], X[f], atol=2e-4)
        np.testing.assert_allclose(W[:, :3, :3] / np.linalg.norm(W[:, :3, :3], axis=1, keepdims=True), R[f],
                                   atol=2e-4)


def test_refused_rig_is_mapped_by_hand_saved_and_then_retargeted_from_the_preset(user_data):
    clip = str(shared_path(*CLIP))
    obj = _target(german_rig())
    with pytest.raises(RuntimeError, match=r"required role.*head.*Bone Map"):
        bpy.ops.motionmill.import_motion(filepath=clip)
    assert not ui_bonemap.MOTIONMILL_PT_bone_map._usable(obj)             # the sub-panel's header shows the error

    assert bpy.ops.motionmill.bone_map_edit() == {"FINISHED"}              # what the auto-map found, now editable
    stored = obj.data.motionmill_bone_map
    assert [e.name for e in stored.roles][:3] == ["root", "pelvis", "spine1"] and len(stored.roles) == 23
    found = _roles(obj)
    assert found["pelvis"] == "Becken" and found["left_knee"] == "Schienbein.L" and "head" not in found
    st = bonemap.status(found, obj.data.bones.keys())
    assert {"head", "left_shoulder", "right_wrist"} <= set(st["missing_required"])
    assert not bpy.ops.motionmill.bone_map_save_preset.poll()
    with pytest.raises(RuntimeError, match="bone map is incomplete: missing Head"):
        bpy.ops.motionmill.bone_map_save_preset(name="too early")

    # by hand: the centre and the left arm with "use the active bone", the right arm by mirroring
    for role in ("spine1", "spine2", "spine3", "neck", "head"):
        _use_active(obj, role, CENTRE[role])
    for k in ("shoulder", "elbow", "wrist"):
        _use_active(obj, f"left_{k}", f"{SIDED[k]}.L")
    stored.roles["left_collar"].bone = "Schluesselbein.L"                 # what the prop_search field does
    stored.index = 1
    obj.data.bones.active = obj.data.bones["Becken"]
    assert bpy.ops.motionmill.bone_map_use_active() == {"FINISHED"}       # no role: the one selected in the list
    assert bpy.ops.motionmill.bone_map_mirror(source="left") == {"FINISHED"}
    assert _roles(obj) == EXPECTED
    assert bonemap.is_usable(bonemap.status(_roles(obj), obj.data.bones.keys()))
    assert ui_bonemap.MOTIONMILL_PT_bone_map._usable(obj)
    assert mm_rig.mapping_for(obj).roles == EXPECTED                      # the retarget uses the edited map

    assert bpy.ops.motionmill.import_motion(filepath=clip) == {"FINISHED"}
    _check_pose(obj, EXPECTED)
    assert bpy.ops.motionmill.bone_map_save_preset(name="Figur (deutsch)") == {"FINISHED"}
    saved = user_data / "bone_maps" / "Figur (deutsch).json"
    assert saved.exists() and bonemap.list_presets() == [("Figur (deutsch)", str(saved))]

    # another rig with the same bone names, scaled and turned as an FBX import leaves it: no hand work
    fbx = np.diag([0.01, 0.01, 0.01, 1.0]) @ np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    other = _target(german_rig("Figur2", fbx))
    assert not len(other.data.motionmill_bone_map.roles)
    m = mm_rig.mapping_for(other)
    assert m.report["preset"] == "Figur (deutsch)" and m.roles == EXPECTED
    assert ui_bonemap.MOTIONMILL_PT_bone_map._usable(other)
    assert bpy.ops.motionmill.import_motion(filepath=clip) == {"FINISHED"}
    _check_pose(other, EXPECTED)

    # the first rig, back on the auto-map, is mapped by the saved preset too
    _target(obj)
    assert bpy.ops.motionmill.bone_map_clear() == {"FINISHED"} and not len(stored.roles)
    assert mm_rig.mapping_for(obj).report["preset"] == "Figur (deutsch)"
    assert ui_bonemap.MOTIONMILL_PT_bone_map._usable(obj)                 # its header's warning is gone


def test_the_panel_marks_wrong_bones_and_presets_load_and_delete(user_data):
    obj = _target(german_rig())
    with pytest.raises(RuntimeError, match="no edited bone map: press Edit Bone Map"):
        bpy.ops.motionmill.bone_map_mirror()
    assert bpy.ops.motionmill.bone_map_edit() == {"FINISHED"}
    with pytest.raises(RuntimeError, match="'Figur' has no active bone: click the bone in Pose or Edit mode"):
        bpy.ops.motionmill.bone_map_use_active(role="head")
    stored = obj.data.motionmill_bone_map
    stored.roles["right_hip"].bone = "Oberschenkel.L"
    stored.roles["neck"].bone = "Hals_alt"
    st = bonemap.status(_roles(obj), obj.data.bones.keys())
    assert st["duplicates"] == {"Oberschenkel.L": ["left_hip", "right_hip"]} and st["unknown"] == {"neck": "Hals_alt"}
    line = ui_bonemap._problem_line(st)
    assert "'Oberschenkel.L' plays Left hip and Right hip" in line and "Neck: no bone 'Hals_alt'" in line
    with pytest.raises(RuntimeError, match="required role|two roles|does not have"):
        bpy.ops.motionmill.import_motion(filepath=str(shared_path(*CLIP)))

    # a preset made on this rig, loaded onto it: roles whose bone is missing stay empty, with a warning
    bonemap.save_preset("teil", Mapping({"pelvis": "Becken", "head": "Kopf", "left_wrist": "Hand.L"}))
    assert bpy.ops.motionmill.bone_map_load_preset(name="teil") == {"FINISHED"}
    assert _roles(obj) == {"pelvis": "Becken", "head": "Kopf"} and stored.source == "preset 'teil'"
    with pytest.raises(RuntimeError, match="no bone-map preset named 'nope'"):
        bpy.ops.motionmill.bone_map_load_preset(name="nope")
    assert bpy.ops.motionmill.bone_map_delete_preset(name="teil") == {"FINISHED"}
    assert bonemap.list_presets() == []


def test_blender_flips_the_names_the_mirror_reads():
    for a, b in (("Oberarm.L", "Oberarm.R"), ("LeftArm", "RightArm"), ("arm_l", "arm_r"), ("L_Arm", "R_Arm")):
        assert bpy.utils.flip_name(a) == b


# ------------------------------------------------------------------------------------------ import, drop, polls

def _mixamo():
    return _target(rigs.mixamo_rig())


def test_import_several_files_at_once_as_strips_one_after_another():
    obj = _mixamo()
    npz, bvh = shared_path(*CLIP), shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    files = [{"name": npz.name}, {"name": "missing.bvh"}]
    assert bpy.ops.motionmill.import_motion(directory=str(npz.parent), files=files, placement="NLA") == {"FINISHED"}
    history = bpy.context.scene.motionmill.history
    assert [h.name for h in history] == ["amass_000000_motion"]          # missing.bvh: a warning, the rest imported
    assert bpy.ops.motionmill.import_motion(directory=str(bvh.parent), placement="NLA",
                                            files=[{"name": bvh.name}, {"name": bvh.name}]) == {"FINISHED"}
    strips = obj.animation_data.nla_tracks["MotionMill"].strips
    assert len(strips) == 3 and len(history) == 3
    assert all(b.frame_start > a.frame_end for a, b in zip(strips[:-1], strips[1:]))
    with pytest.raises(RuntimeError, match="missing.bvh"):
        bpy.ops.motionmill.import_motion(directory=str(bvh.parent), files=[{"name": "missing.bvh"}])


def _area(kind):
    """A (screen, area, region) of the startup file's screens: headless bpy has no window, but Blender's own drop
    operator runs in one of these areas."""
    for screen in bpy.data.screens:
        for area in screen.areas:
            if area.type == kind:
                return screen, area, next(r for r in area.regions if r.type == "WINDOW")
    pytest.skip(f"no {kind} area in this Blender's startup screens")


def test_file_handler_is_registered_and_dropping_files_on_the_viewport_imports_them():
    fh = bpy.types.MOTIONMILL_FH_motion
    assert issubclass(fh, bpy.types.FileHandler) and fh.bl_import_operator == "motionmill.import_motion"
    assert set(fh.bl_file_extensions.split(";")) >= {".bvh", ".npz"}
    assert fh.poll_drop(types.SimpleNamespace(area=types.SimpleNamespace(type="VIEW_3D")))
    assert not fh.poll_drop(types.SimpleNamespace(area=types.SimpleNamespace(type="NODE_EDITOR")))
    assert not fh.poll_drop(types.SimpleNamespace(area=None))
    op = bpy.ops.motionmill.import_motion.get_rna_type().properties
    assert {"filepath", "directory", "files"} <= set(op.keys())

    obj = _mixamo()
    bvh = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    other = bvh.parent / "motionmillion_case1_1_predict.bvh"
    names = [{"name": bvh.name}] + ([{"name": other.name}] if other.exists() else [])
    # what Blender does on a drop: wm.drop_import_file finds the file handlers whose poll_drop accepts the area
    screen, area, region = _area("VIEW_3D")
    with bpy.context.temp_override(screen=screen, area=area, region=region):
        assert bpy.ops.wm.drop_import_file(directory=str(bvh.parent), files=names) == {"FINISHED"}
    assert [h.name for h in bpy.context.scene.motionmill.history] == [n["name"][:-4] for n in names]
    assert obj.animation_data.action.name == names[-1]["name"][:-4]
    # dropped on another editor, MotionMill's handler does not take the file
    screen, area, region = _area("NODE_EDITOR")
    with bpy.context.temp_override(screen=screen, area=area, region=region):
        try:
            bpy.ops.wm.drop_import_file(directory=str(bvh.parent), files=names[:1])
        except RuntimeError:
            pass
    assert len(bpy.context.scene.motionmill.history) == len(names)


def test_operators_say_why_they_are_disabled():
    s = bpy.context.scene.motionmill
    s.target = None
    bpy.context.view_layer.objects.active = None
    for op in (bpy.ops.motionmill.import_motion, bpy.ops.motionmill.retarget, bpy.ops.motionmill.cleanup_feet,
               bpy.ops.motionmill.generate_batch, bpy.ops.motionmill.bone_map_edit):
        assert not op.poll()
        with pytest.raises(RuntimeError, match=r"\.poll\(\) no armature selected"):
            op()
    _mixamo()
    s.prompt, s.prompt_text = "", None
    with pytest.raises(RuntimeError, match=r"\.poll\(\) the prompt is empty"):
        bpy.ops.motionmill.generate()
    with pytest.raises(RuntimeError, match=r"\.poll\(\) nothing is running"):
        bpy.ops.motionmill.cancel()
    for op in (bpy.ops.motionmill.history_apply, bpy.ops.motionmill.history_preview, bpy.ops.motionmill.history_delete):
        with pytest.raises(RuntimeError, match=r"\.poll\(\) no clips yet"):
            op()
    s.prompt = "a person walks"
    bpy.context.window_manager.motionmill.running = True
    try:
        with pytest.raises(RuntimeError, match=r"\.poll\(\) a generation is already running"):
            bpy.ops.motionmill.generate()
    finally:
        bpy.context.window_manager.motionmill.running = False
    assert bpy.ops.motionmill.generate.poll() and bpy.ops.motionmill.bone_map_edit.poll()


# ------------------------------------------------------------------------------------------ the sub-panel's drawing

class _Layout:
    """Records what a draw function asks of a UILayout and checks each name against real bpy: operators exist,
    properties exist on their data, icons are Blender's. (Headless bpy has no window to draw a real panel in.)"""
    ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, log):
        self.log = log

    def _icon(self, kw):
        assert kw.get("icon", "NONE") in self.ICONS, kw["icon"]

    def _child(self, *a, **kw):
        return _Layout(self.log)
    row = column = box = split = _child

    def label(self, text="", icon="NONE"):
        self._icon({"icon": icon})
        self.log.append(("label", text, icon, getattr(self, "alert", False)))

    def operator(self, idname, text=None, icon="NONE"):
        self._icon({"icon": icon})
        group, name = idname.split(".")
        assert getattr(getattr(bpy.ops, group), name).get_rna_type(), idname
        self.log.append(("operator", idname, text))
        return types.SimpleNamespace()

    def prop_search(self, data, prop, search_data, search_prop, text=None):
        assert prop in data.bl_rna.properties and search_prop in search_data.bl_rna.properties
        self.log.append(("prop_search", data.name, getattr(data, prop)))

    def template_list(self, ul, list_id, data, prop, active_data, active_prop, rows=5):
        assert hasattr(bpy.types, ul) and prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.log.append(("list", ul))

    def menu(self, idname, text="", icon="NONE"):
        self._icon({"icon": icon})
        assert hasattr(bpy.types, idname)
        self.log.append(("menu", idname))


def _draw(obj):
    log = []
    panel = ui_bonemap.MOTIONMILL_PT_bone_map
    fake = types.SimpleNamespace(layout=_Layout(log), _draw_auto=lambda *a: panel._draw_auto(fake, *a),
                                 _draw_map=lambda *a: panel._draw_map(fake, *a), _usable=panel._usable)
    panel.draw_header(fake, bpy.context)
    panel.draw(fake, bpy.context)
    for e in obj.data.motionmill_bone_map.roles:
        ui_bonemap.MOTIONMILL_UL_bone_map.draw_item(None, bpy.context, _Layout(log), None, e, 0, None, "", 0)
    return log


def test_the_sub_panel_shows_the_map_marks_missing_roles_and_says_what_the_selected_role_means():
    obj = _target(german_rig())
    log = _draw(obj)
    assert ("label", "", "ERROR", False) in log                             # the header: this rig is refused
    assert ("operator", "motionmill.bone_map_edit", None) in log
    assert any(e[0] == "label" and e[1].startswith("Cannot retarget: 7 required roles") for e in log)
    bpy.ops.motionmill.bone_map_edit()
    obj.data.motionmill_bone_map.index = list(obj.data.motionmill_bone_map.roles.keys()).index("left_knee")
    log = _draw(obj)
    assert ("list", "MOTIONMILL_UL_bone_map") in log and ("menu", "MOTIONMILL_MT_bone_map_presets") in log
    # each row: the short role, and the bone as a button opening a search (no prefix shared by these bones)
    assert ("operator", "motionmill.bone_map_pick", "Schienbein.L") in log
    assert ("operator", "motionmill.bone_map_pick", "—") in log                 # head: no bone yet
    assert ("label", "Head", "ERROR", True) in log and ("label", "L knee", "NONE", False) in log
    text = " ".join(e[1] for e in log if e[0] == "label")
    assert "the shin, starting at the knee" in text and "missing Head" in text
    assert sum(e[:2] == ("operator", "motionmill.bone_map_use_active") for e in log) == 23


def test_the_headless_batch_uses_the_map_saved_in_the_blend_file(tmp_path):
    from conftest import run_batch
    obj = _target(german_rig())
    bvh = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    blend, out = tmp_path / "in.blend", tmp_path / "out.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    r = run_batch(["--blend", blend, "--rig", "Figur", "--motion", bvh, "--out", out])
    assert r.returncode != 0 and "required role" in r.stderr and not out.exists()
    bpy.ops.motionmill.bone_map_edit()
    for e in obj.data.motionmill_bone_map.roles:
        e.bone = EXPECTED.get(e.name, "")
    report = mm_rig.rig_report(obj)
    assert report.startswith("Rig (edited in the panel), ") and " m tall, feet found; up axis" in report, report
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    r = run_batch(["--blend", blend, "--rig", "Figur", "--motion", bvh, "--out", out])
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists()


def test_a_bone_map_row_fits_the_default_sidebar_and_picks_from_a_search(user_data):
    """The rig's shared prefix ('mixamorig:') is left out of the row, so the part that tells bones apart shows at
    the default sidebar width; the button's tooltip names the whole bone, and it opens a search that sets it."""
    obj = _target(rigs.mixamo_rig())
    bpy.ops.motionmill.bone_map_edit()
    roles = obj.data.motionmill_bone_map.roles
    assert ui_bonemap.row_texts(obj.data, "right_elbow", roles["right_elbow"].bone) == ("R elbow", "RightForeArm")
    log = _draw(obj)
    assert ("operator", "motionmill.bone_map_pick", "RightForeArm") in log
    props = types.SimpleNamespace(role="right_elbow")
    assert bpy.types.MOTIONMILL_OT_bone_map_pick.description(bpy.context, props) == \
        "Right elbow: mixamorig:RightForeArm. Click to pick another bone"
    assert bpy.ops.motionmill.bone_map_pick(role="right_elbow", bone="mixamorig:RightHand") == {"FINISHED"}
    assert roles["right_elbow"].bone == "mixamorig:RightHand"
    assert bpy.ops.motionmill.bone_map_pick(role="right_elbow", bone=ui_bonemap.NO_BONE) == {"FINISHED"}
    assert roles["right_elbow"].bone == ""
    assert bonemap.shared_prefix(["J_Bip_C_Hips", "J_Bip_L_UpperArm"]) == "J_Bip_"
    assert bonemap.shared_prefix(["DEF-spine", "DEF-thigh.L"]) == "DEF-" and bonemap.shared_prefix(["Hips", "Head"]) == ""

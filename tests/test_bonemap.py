"""The bone-map editor's logic (blender_addon.bonemap), without bpy: role texts, what the panel marks, mirroring,
and saved presets that the auto-map reads next to the built-in ones."""
import json

import numpy as np
import pytest

from blender_addon import bonemap
from retarget.mapping import REQUIRED_ROLES, ROLES, load_presets
from retarget.skeleton import Skeleton


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONMILL_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def flip(name):   # a stand-in for bpy.utils.flip_name: enough for .L/.R names
    return name[:-1] + {"L": "R", "R": "L"}[name[-1]] if name.endswith((".L", ".R")) else name


def test_every_role_has_a_label_and_a_meaning():
    for r in ROLES:
        text = bonemap.describe(r)
        assert text.endswith("(required)") == (r in REQUIRED_ROLES)
        assert bonemap.label(r)[0].isupper()
    assert bonemap.describe("left_knee").startswith("left side: the shin")
    assert bonemap.label("spine2") == "Spine 2" and bonemap.label("right_wrist") == "Right wrist"
    assert bonemap.mirror_role("left_ankle") == "right_ankle" and bonemap.mirror_role("head") is None


def test_status_marks_missing_unknown_and_doubled_bones():
    bones = ["Hips", "Head", "Thigh.L", "Thigh.R"]
    st = bonemap.status({"pelvis": "Hips", "head": "Head", "left_hip": "Thigh.L", "right_hip": "Thigh.L",
                         "neck": "Nope", "spine1": ""}, bones)
    assert st["duplicates"] == {"Thigh.L": ["left_hip", "right_hip"]}
    assert st["unknown"] == {"neck": "Nope"}
    assert "left_knee" in st["missing_required"] and "pelvis" not in st["missing_required"]
    assert "spine1" in st["missing_optional"] and not bonemap.is_usable(st)
    full = {r: f"b{i}" for i, r in enumerate(ROLES)}
    assert bonemap.is_usable(bonemap.status(full, list(full.values())))


def test_mirror_fills_the_other_side_and_names_what_it_cannot_flip():
    bones = ["Arm.L", "Arm.R", "Hand.L", "Hand.R", "Leg.L", "OddLeftOnly"]
    roles = {"left_shoulder": "Arm.L", "left_wrist": "Hand.L", "left_hip": "Leg.L", "left_knee": "OddLeftOnly",
             "right_wrist": "Hand.L"}
    out, unmatched = bonemap.mirror_roles(roles, bones, flip, "left")
    assert out["right_shoulder"] == "Arm.R" and out["right_wrist"] == "Hand.R"
    assert "right_hip" not in out and sorted(unmatched) == ["left_hip", "left_knee"]
    back, _ = bonemap.mirror_roles({"right_shoulder": "Arm.R"}, bones, flip, "right")
    assert back["left_shoulder"] == "Arm.L"


def _skeleton(names):
    """A chain of bones one above the other: the auto-map's structure finds nothing in it, only names count."""
    B = len(names)
    mats = np.repeat(np.eye(4)[None], B, axis=0)
    mats[:, 2, 3] = np.arange(B) * 0.1
    return Skeleton(list(names), [-1] + list(range(B - 1)), mats, np.full(B, 0.1), np.eye(4))


def test_saved_preset_round_trip_and_the_auto_map_reads_it(user_data):
    names = [f"Knochen{i}" for i in range(len(ROLES))]
    skel = _skeleton(names)
    assert bonemap.auto_map(skel).report["missing_required"]           # refused: no name or shape it knows
    roles = dict(zip(ROLES, names))
    mapping = bonemap.mapping_for(skel, roles)
    assert mapping.roles == roles and mapping.report["missing_required"] == []
    path = bonemap.save_preset("My rig / v2", mapping, "Rig")
    assert path.startswith(str(user_data / "bone_maps")) and path.endswith("My rig _ v2.json")
    assert bonemap.list_presets() == [("My rig / v2", path)] and bonemap.presets_stamp()[0][0] == "My rig _ v2.json"
    data = json.loads(open(path).read())
    assert data["roles"]["head"] == [roles["head"]] and data["priority"] == bonemap.USER_PRIORITY
    m = bonemap.auto_map(skel)
    assert m.report["preset"] == "My rig / v2" and m.roles == roles
    assert bonemap.roles_from_preset(bonemap.load_preset("My rig / v2"), [n.upper() for n in names]) == {
        r: b.upper() for r, b in roles.items()}
    bonemap.delete_preset("My rig / v2")
    assert bonemap.list_presets() == [] and bonemap.presets_stamp() == ()
    assert bonemap.auto_map(skel).report["missing_required"]
    with pytest.raises(ValueError, match="no bone-map preset named 'gone'"):
        bonemap.load_preset("gone")


def test_a_saved_preset_wins_a_tie_with_a_built_in_one_and_bad_files_are_skipped(user_data):
    mixamo = next(p for p in load_presets() if p["name"] == "mixamo")
    names = ["mixamorig:" + mixamo["roles"][r][0] for r in ROLES if r in mixamo["roles"]]
    skel = _skeleton(names)
    assert bonemap.auto_map(skel).report["preset"] == "mixamo"
    built = bonemap.auto_map(skel)
    bonemap.save_preset("my mixamo", built)      # the same bones: a tie on every count but the priority
    (user_data / "bone_maps" / "broken.json").write_text("{not json")
    (user_data / "bone_maps" / "other.json").write_text(json.dumps({"no": "roles"}))
    m = bonemap.auto_map(skel)
    assert m.report["preset"] == "my mixamo" and m.roles == built.roles
    assert [n for n, _ in bonemap.list_presets()] == ["my mixamo"]


def test_a_hand_written_preset_with_side_placeholders_is_read(user_data):
    folder = user_data / "bone_maps"
    folder.mkdir(parents=True)
    (folder / "short.json").write_text(json.dumps({"name": "short", "roles": {"{side}_hip": ["Thigh.{S}"]}}))
    preset = bonemap.load_preset("short")
    assert preset["roles"] == {"left_hip": ["Thigh.L"], "right_hip": ["Thigh.R"]}
    assert bonemap.user_presets()[0]["priority"] == bonemap.USER_PRIORITY


def test_the_preset_example_in_the_docs_is_a_preset_the_product_reads(user_data):
    """docs/retargeting.md's example preset, saved where the docs say, is read as they describe."""
    import re
    from conftest import ROOT
    text = (ROOT / "docs" / "retargeting.md").read_text()
    example = re.search(r"## Bone-map presets.*?```json\n(.*?)```", text, re.S).group(1)
    folder = user_data / "bone_maps"
    folder.mkdir(parents=True)
    (folder / "my_studio.json").write_text(example)
    preset = bonemap.load_preset("my_studio")
    assert preset["roles"]["left_hip"] == ["LeftUpLeg", "thigh_l"] and preset["roles"]["right_hip"] == ["RightUpLeg",
                                                                                                      "thigh_r"]
    assert preset["prefixes"] == ["^CTRL_"] and preset["chains"]["spine"][0] == "spine_01"


def test_merge_keeps_the_auto_maps_twist_bones_the_edit_does_not_claim():
    from retarget.mapping import Mapping
    auto = Mapping({"left_shoulder": "UpperArm.L"}, [{"bone": "Twist.L", "limb": "left_shoulder", "source": "child",
                                                     "share": 0.5}, {"bone": "Claimed", "limb": "left_shoulder",
                                                                     "source": "child", "share": 0.5}],
                   {"Twist.L": "twist", "Claimed": "twist", "IK.L": "ik"}, "x", {"candidates": {}, "notes": {}})
    m = bonemap.merge(auto, {"left_shoulder": "UpperArm.L", "left_elbow": "Claimed", "bogus": "X"})
    assert m.roles == {"left_shoulder": "UpperArm.L", "left_elbow": "Claimed"}
    assert [t["bone"] for t in m.twist] == ["Twist.L"] and m.classes == {"Twist.L": "twist", "IK.L": "ik"}
    assert "head" in m.report["missing_required"]


@pytest.mark.parametrize("name,side", [("thigh.L", "left"), ("lowerarm.r", "right"), ("UpperLeg_R", "right"),
                                       ("LeftUpLeg", "left"), ("mixamorig:RightHand", "right"), ("lShldr", "left"),
                                       ("rThigh", "right"), ("L_Arm", "left"), ("hand_l", "left"),
                                       ("lowerback", None), ("Spine", None), ("Head", None), ("leftEye", "left")])
def test_a_bone_names_side(name, side):
    from retarget.mapping import name_side
    assert name_side(name) == side


def test_a_refusals_candidates_are_on_the_roles_side():
    """A rig whose arms the auto-map cannot place: the refusal names left bones for left roles, right for right
    (it named 'lowerarm.r' for left_elbow: 'l' read as a side in 'lowerarm')."""
    from retarget.mapping import auto_map
    from retarget.skeleton import SkeletonError
    names = ["root", "spine", "head", "limb1.l", "lowerelbow.l", "limb1.r", "lowerelbow.r"]
    parents = [-1, 0, 1, 1, 3, 1, 5]
    rest = np.tile(np.eye(4), (len(names), 1, 1))
    rest[:, :3, 3] = [[0, 0, 1], [0, 0, 1.2], [0, 0, 1.6], [0.2, 0, 1.4], [0.5, 0, 1.4], [-0.2, 0, 1.4], [-0.5, 0, 1.4]]
    mapping = auto_map(Skeleton(names, parents, rest))
    with pytest.raises(SkeletonError):
        mapping.validate(Skeleton(names, parents, rest))
    cands = mapping.report["candidates"]
    assert cands["left_elbow"] == ["lowerelbow.l"] and cands["right_elbow"] == ["lowerelbow.r"]

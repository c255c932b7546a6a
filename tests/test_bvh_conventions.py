"""BVH files in the namings real motion libraries use, made from the real AMASS clip at 120 fps in inches and
centimetres, retarget as the SMPL source does. Names that mean different bones in different conventions
(LeftShoulder: the clavicle in Mixamo, LaFAN1, Rokoko and CMU's MotionBuilder-friendly files, the upper arm in CMU's
3ds Max-friendly ones) are settled by the skeleton's structure."""
import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import rigs  # noqa: E402  (tests/rigs.py)
from conftest import shared_path  # noqa: E402
from retarget.bvh import read_bvh, write_bvh  # noqa: E402
from retarget.mapping import auto_map, format_report  # noqa: E402
from retarget.motion import Motion, MotionError  # noqa: E402
from retarget.skeleton import Skeleton  # noqa: E402
from retarget.transfer import pose_world, retarget  # noqa: E402


def _sided(fmt):
    return [fmt.format(Side=S, S=S[0]) for S in ("Left", "Right")]


def _smpl_order(pelvis, hip, spine1, knee, spine2, ankle, spine3, toe, neck, collar, head, upper, fore, hand):
    """22 names in SMPL-22 joint order from each convention's words (sided ones as format strings)."""
    return ([pelvis] + _sided(hip) + [spine1] + _sided(knee) + [spine2] + _sided(ankle) + [spine3] + _sided(toe)
            + [neck] + _sided(collar) + [head] + _sided(upper) + _sided(fore) + _sided(hand))


NAMINGS = {  # convention -> (names in SMPL order, the preset that should claim them)
    "cmu_3dsmax": (_smpl_order("Hips", "{Side}Hip", "lowerback", "{Side}Knee", "Chest", "{Side}Ankle", "Chest2", "{Side}Toe",
                               "lowerneck", "{Side}Collar", "Head", "{Side}Shoulder", "{Side}Elbow", "{Side}Wrist"), "cmu_3dsmax"),
    "cmu_motionbuilder": (_smpl_order("Hips", "{Side}UpLeg", "LowerBack", "{Side}Leg", "Spine", "{Side}Foot", "Spine1",
                                      "{Side}ToeBase", "Neck", "{Side}Shoulder", "Head", "{Side}Arm", "{Side}ForeArm",
                                      "{Side}Hand"), "cmu_bvh"),
    "lafan1": (_smpl_order("Hips", "{Side}UpLeg", "Spine", "{Side}Leg", "Spine1", "{Side}Foot", "Spine2", "{Side}Toe", "Neck",
                           "{Side}Shoulder", "Head", "{Side}Arm", "{Side}ForeArm", "{Side}Hand"), "lafan1"),
    "truebones": (_smpl_order("Bip01_Pelvis", "Bip01_{S}_Thigh", "Bip01_Spine", "Bip01_{S}_Calf", "Bip01_Spine1",
                              "Bip01_{S}_Foot", "Bip01_Spine2", "Bip01_{S}_Toe0", "Bip01_Neck", "Bip01_{S}_Clavicle",
                              "Bip01_Head", "Bip01_{S}_UpperArm", "Bip01_{S}_Forearm", "Bip01_{S}_Hand"), "biped"),
    "rokoko": (_smpl_order("Hips", "{Side}Thigh", "Spine1", "{Side}Shin", "Spine2", "{Side}Foot", "Spine3", "{Side}Toe", "Neck",
                           "{Side}Shoulder", "Head", "{Side}Arm", "{Side}ForeArm", "{Side}Hand"), "rokoko"),
    "mixamo": (_smpl_order("Hips", "{Side}UpLeg", "Spine", "{Side}Leg", "Spine1", "{Side}Foot", "Spine2", "{Side}ToeBase",
                           "Neck", "{Side}Shoulder", "Head", "{Side}Arm", "{Side}ForeArm", "{Side}Hand"), "mixamo"),
}
UNITS = {"inch": 0.0254, "cm": 0.01}


@pytest.fixture(scope="module")
def clip():
    """The real AMASS clip's first 3 s at 120 fps, as CMU's files run."""
    d = np.load(shared_path("data", "motion272", "amass_000000_motion.npz"))
    return Motion(d["rotations"][:91], d["translation"][:91], float(d["fps"])).resample(120)


@pytest.fixture(scope="module")
def mixamo():
    rigs.clear_scene()
    sk = rigs.skeleton_from_object(rigs.mixamo_rig())
    rigs.clear_scene()
    return sk


def with_hip_joints(m):
    """CMU's MotionBuilder-friendly skeleton: a short LHipJoint / RHipJoint between the hips and each thigh."""
    old = list(range(len(m.joint_names)))
    names = [m.joint_names[0], "LHipJoint", "RHipJoint"] + list(m.joint_names[1:])
    parents = [-1, 0, 0] + [(1 if j == 1 else 2 if j == 2 else m.parents[j] + 2 if m.parents[j] > 0 else 0) for j in old[1:]]
    offsets = np.concatenate([m.offsets[:1], m.offsets[1:3] / 2, m.offsets[1:]])
    offsets[3:5] /= 2
    T = m.num_frames
    rot = np.concatenate([m.rotations[:, :1], np.broadcast_to(np.eye(3), (T, 2, 3, 3)), m.rotations[:, 1:]], 1)
    return Motion(rot, m.translation, m.fps, tuple(names), tuple(parents), offsets)


def in_convention(clip, convention, unit):
    names, _ = NAMINGS[convention]
    m = Motion(clip.rotations, clip.translation / UNITS[unit], clip.fps, tuple(names), clip.parents, clip.offsets / UNITS[unit])
    return with_hip_joints(m) if convention == "cmu_motionbuilder" else m


@pytest.mark.parametrize("unit", list(UNITS))
@pytest.mark.parametrize("convention", list(NAMINGS))
def test_bvh_in_each_naming_retargets_as_the_smpl_source(clip, mixamo, tmp_path, convention, unit):
    path = tmp_path / f"{convention}_{unit}.bvh"
    write_bvh(path, in_convention(clip, convention, unit))
    source = read_bvh(path, scale="auto")
    assert source.fps == 120 and np.abs(source.translation - clip.translation).max() < 1e-4
    m = auto_map(Skeleton.from_motion(source))
    assert m.report["preset"] == NAMINGS[convention][1], format_report(m)
    names = NAMINGS[convention][0]
    assert m.roles["left_shoulder"] == names[16] and m.roles["left_collar"] == names[13], format_report(m)
    from_file = pose_world(retarget(source, mixamo), mixamo)[1]
    from_smpl = pose_world(retarget(clip, mixamo), mixamo)[1]
    assert np.abs(from_file - from_smpl).max() < 1e-3


def test_leftshoulder_is_settled_by_structure_when_no_preset_knows_the_file(clip):
    """Mixamo's words on a 3ds Max-style arm (no clavicle word, 'LeftShoulder' straight above the elbow): the upper arm
    is where the arm's long segment starts, whatever the preset thought the name meant."""
    names = list(NAMINGS["mixamo"][0])
    names[13], names[14] = "LeftClav_x", "RightClav_x"          # a clavicle under a name no preset knows
    names[16], names[17] = "LeftShoulder", "RightShoulder"      # the upper arm, as CMU's 3ds Max files name it
    names[18:22] = ["LeftForeArm", "RightForeArm", "LeftHand", "RightHand"]
    m = Motion(clip.rotations, clip.translation, clip.fps, tuple(names), clip.parents, clip.offsets)
    mp = auto_map(Skeleton.from_motion(m))
    assert mp.roles["left_shoulder"] == "LeftShoulder" and mp.roles["right_shoulder"] == "RightShoulder", format_report(mp)
    assert mp.roles["left_collar"] == "LeftClav_x", format_report(mp)


def test_unmappable_file_names_the_missing_roles_and_likely_bones(clip, mixamo, tmp_path):
    """A capture whose left arm stops at the upper arm (no forearm, no hand) cannot be retargeted; the one-line
    error names each missing role and the bones that could play it."""
    names = list(NAMINGS["cmu_3dsmax"][0])
    keep = [j for j in range(22) if j not in (18, 20)]            # drop LeftElbow and LeftWrist
    index = {j: k for k, j in enumerate(keep)}
    parents = tuple(index[clip.parents[j]] if clip.parents[j] >= 0 else -1 for j in keep)
    m = Motion(clip.rotations[:, keep], clip.translation, clip.fps, tuple(names[j] for j in keep), parents, clip.offsets[keep])
    write_bvh(tmp_path / "cut.bvh", m)
    with pytest.raises(MotionError) as e:
        retarget(read_bvh(tmp_path / "cut.bvh", scale="auto"), mixamo)
    msg = str(e.value)
    assert "\n" not in msg and "left_elbow" in msg and "left_wrist" in msg and "LeftShoulder" in msg, msg


def test_headless_batch_reports_the_rig_and_takes_a_cmu_3ds_max_file(clip, tmp_path):
    """The issue's two failures end to end: a CMU 3ds Max-friendly BVH onto a glTF-imported Mixamo-style rig (Y-up
    armature space, scale 0.01, invented tails) in the headless batch, which says what it read from the rig."""
    from conftest import run_batch
    rigs.clear_scene()
    rigs.gltf_round_trip(rigs.mixamo_rig(), tmp_path)
    blend = tmp_path / "in.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    rigs.clear_scene()
    write_bvh(tmp_path / "cmu.bvh", in_convention(clip, "cmu_3dsmax", "inch"))
    r = run_batch(["--blend", blend, "--rig", "Mixamo", "--motion", tmp_path / "cmu.bvh", "--out", tmp_path / "out.blend"])
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("rig 'Mixamo': "))
    assert "up axis +Y, unit scale 0.01, leg 0.80 m" in line, line
    assert "left: mixamorig:LeftFoot head, mixamorig:LeftToeBase head, mixamorig:LeftToe_End head" in line, line
    assert "warning" not in r.stdout

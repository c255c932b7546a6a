"""BVH reading/writing: the reference's real files, round trips, unit/axis options, broken input, and real Blender."""
import glob
import os

import numpy as np
import pytest

from conftest import SHARED, shared_path
from retarget import smpl
from retarget.bvh import (fps_from_frame_time, guess_bvh_scale, guess_unit_scale, read_bvh, rest_height,
                          reorder_joints, undo_reference_root_offset, write_bvh)
from retarget.motion import Motion, MotionError
from retarget.motion272 import features_to_motion
from retarget.rotations import quaternion_to_matrix

REFERENCE_FILES = sorted(glob.glob(str(SHARED / "data" / "bvh" / "*.bvh")))
FEET = ("Left_ankle", "Right_ankle", "Left_foot", "Right_foot")


def read_like(path, like, **kw):
    """read_bvh, joints back in `like`'s order (a BVH lists them depth first)."""
    return reorder_joints(read_bvh(path, **kw), like.joint_names)


def positions(m):
    return smpl.forward_kinematics(m.rotations, m.translation, m.offsets, m.parents)[1]


@pytest.fixture(scope="module")
def amass_motion():
    return features_to_motion(np.load(shared_path("data", "motion272", "amass_000000.npy")))


def test_all_reference_files_are_there():
    shared_path("data", "bvh")
    assert len(REFERENCE_FILES) == 8


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=os.path.basename)
def test_read_reference_files(path):
    m = read_bvh(path)
    predict = path.endswith("_predict.bvh")
    assert m.fps == (30.0 if predict else 60.0)
    assert m.num_frames == (100 if predict else 199)
    assert len(m.joint_names) == 24 and m.joint_names[0] == "Pelvis" and m.joint_names[-1] == "Right_palm"
    # The file lists joints depth first; by name they are the neutral SMPL body.
    in_smpl_order = [[n.lower() for n in m.joint_names].index(name) for name in smpl.JOINT_NAMES]
    assert np.allclose(m.offsets[in_smpl_order[1:]], smpl.REST_OFFSETS[1:], atol=1e-6)
    assert [m.parents[j] for j in in_smpl_order[1:]] == [in_smpl_order[p] for p in smpl.PARENTS[1:]]
    assert np.allclose(m.offsets[0], smpl.REST_OFFSETS[0], atol=1e-6)       # the reference's ROOT OFFSET
    assert guess_bvh_scale(path) == 1.0
    head = positions(m)[:, m.joint_index("Head"), 1] - m.translation[:, 1]
    assert head.min() > 0.2 and head.mean() > 0.4  # y is up (case2 bends forward: 0.26 at its lowest)


@pytest.mark.parametrize("path", [p for p in REFERENCE_FILES if p.endswith("_predict.bvh")], ids=os.path.basename)
def test_reference_predict_files_sit_low_by_the_pelvis_offset(path, tmp_path):
    """The reference writer's root channel is offset + pelvis: read as written, the feet go ~0.13-0.23 m under
    the floor; moved to the real pelvis they are on it. Our writer keeps the real pelvis."""
    m = read_bvh(path)
    fixed = undo_reference_root_offset(m)
    feet = [m.joint_index(n) for n in FEET]
    assert positions(m)[:, feet, 1].min() < -0.1
    assert -0.05 < positions(fixed)[:, feet, 1].min() < 0.15
    assert np.allclose(fixed.translation - m.translation, -smpl.REST_OFFSETS[0], atol=1e-6)
    write_bvh(tmp_path / "ours.bvh", fixed)
    ours = read_bvh(tmp_path / "ours.bvh")
    assert np.allclose(ours.offsets[0], 0) and np.abs(ours.translation - fixed.translation).max() < 1e-6
    assert np.abs(positions(ours) - positions(fixed)).max() < 1e-6


@pytest.mark.parametrize("path", REFERENCE_FILES[:2], ids=os.path.basename)
def test_reference_file_rewrite_is_exact(path, tmp_path):
    m = read_bvh(path)
    write_bvh(tmp_path / "again.bvh", m)
    back = read_bvh(tmp_path / "again.bvh")
    # Our writer puts the root offset into the position channels: same world positions.
    assert np.abs(positions(back) - positions(m)).max() < 1e-6
    assert np.abs(back.rotations - m.rotations).max() < 1e-6


@pytest.mark.parametrize("order", ["ZYX", "XYZ", "YXZ", "ZXY"])
def test_write_read_round_trip(amass_motion, tmp_path, order):
    m = amass_motion
    write_bvh(tmp_path / "a.bvh", m, order=order)
    assert read_bvh(tmp_path / "a.bvh").joint_names[:3] == ("pelvis", "left_hip", "left_knee")  # depth first
    back = read_like(tmp_path / "a.bvh", m)
    assert back.joint_names == m.joint_names and back.parents == m.parents and back.fps == 30.0
    assert np.abs(back.rotations - m.rotations).max() < 1e-6
    assert np.abs(back.translation - m.translation).max() < 1e-6
    assert np.abs(back.offsets[1:] - m.offsets[1:]).max() < 1e-6
    assert np.abs(positions(back) - positions(m)).max() < 1e-6


def test_round_trip_arbitrary_skeleton_and_fps(tmp_path):
    rng = np.random.default_rng(3)
    names, parents = ("hips", "chest", "head", "l_leg", "tail"), (-1, 0, 1, 0, 0)
    offsets = rng.normal(size=(5, 3)) * 0.3
    m = Motion(quaternion_to_matrix(rng.normal(size=(17, 5, 4))), rng.normal(size=(17, 3)), 24.0, names, parents, offsets)
    write_bvh(tmp_path / "s.bvh", m)
    text = (tmp_path / "s.bvh").read_text()
    assert text.count("End Site") == 3 and "Frame Time: 0.0416666667" in text
    back = read_like(tmp_path / "s.bvh", m)
    assert back.fps == 24.0 and np.abs(positions(back) - positions(m)).max() < 1e-6
    assert np.abs(back.rotations - m.rotations).max() < 1e-6


def scaled(m, factor):
    return Motion(m.rotations, m.translation * factor, m.fps, m.joint_names, m.parents, m.offsets * factor)


@pytest.mark.parametrize("unit,factor", [("cm", 100.0), ("inch", 1 / 0.0254)])
def test_units_scale_and_guess(amass_motion, tmp_path, unit, factor):
    m = amass_motion.resample(10)
    write_bvh(tmp_path / "u.bvh", scaled(m, factor))
    assert guess_bvh_scale(tmp_path / "u.bvh") == pytest.approx(1 / factor)
    for scale in (1 / factor, "auto"):
        back = read_like(tmp_path / "u.bvh", m, scale=scale)
        assert np.abs(positions(back) - positions(m)).max() < 1e-6
    assert np.abs(read_bvh(tmp_path / "u.bvh").translation - m.translation * factor).max() < 1e-4


def test_unit_guess_boundaries():
    assert guess_unit_scale(1.4) == 1.0 and guess_unit_scale(60) == 0.0254 and guess_unit_scale(150) == 0.01
    assert rest_height(smpl.REST_OFFSETS, smpl.PARENTS) == pytest.approx(1.3, abs=0.2)


def test_z_up_file(amass_motion, tmp_path):
    m = amass_motion.resample(10)
    C = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # y-up -> z-up: (x, y, z) -> (x, -z, y)
    zup = Motion(C @ m.rotations @ C.T, m.translation @ C.T, m.fps, m.joint_names, m.parents, m.offsets @ C.T)
    write_bvh(tmp_path / "z.bvh", zup)
    back = read_like(tmp_path / "z.bvh", m, up="Z")
    assert np.abs(positions(back) - positions(m)).max() < 1e-6
    assert np.abs(back.rotations - m.rotations).max() < 1e-6
    assert guess_bvh_scale(tmp_path / "z.bvh", up="Z") == 1.0


HAND_WRITTEN = """HIERARCHY
ROOT Hips
{
  OFFSET 1 2 3
  CHANNELS 6 Zposition Xposition Yposition Xrotation Zrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 5 Xposition Yposition Zposition Xrotation Zrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.1
FRAMES
"""


def hand_written(tmp_path, frames, header_frames=2):
    text = HAND_WRITTEN.replace("FRAMES", "\n".join(frames)).replace("Frames: 2", f"Frames: {header_frames}")
    (tmp_path / "h.bvh").write_text(text)
    return tmp_path / "h.bvh"


def axis_rot(axis, deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_any_channel_order_and_constant_joint_positions(tmp_path):
    path = hand_written(tmp_path, ["30 10 20 40 50 60 0 12 0 70 80", "31 11 21 41 51 61 0 12 0 71 81"])
    m = read_bvh(path)
    assert m.joint_names == ("Hips", "Spine") and m.fps == 10.0
    assert np.allclose(m.translation, [[10, 20, 30], [11, 21, 31]])   # channels in Z X Y order
    assert np.allclose(m.offsets, [[1, 2, 3], [0, 12, 0]])            # constant position channels replace OFFSET
    assert np.allclose(m.rotations[0, 0], axis_rot("X", 40) @ axis_rot("Z", 50) @ axis_rot("Y", 60))
    assert np.allclose(m.rotations[1, 1], axis_rot("X", 71) @ axis_rot("Z", 81))


def test_a_translating_joint_below_a_single_chain_becomes_the_root(tmp_path):
    """Bandai-Namco's layout: a root above the joint that really moves. The root's transform folds into it."""
    path = hand_written(tmp_path, ["1 2 3 0 90 0 0 12 0 0 0", "1 2 3 0 90 0 0 13 0 0 5"])
    m = read_bvh(path)
    assert m.joint_names == ("Spine",) and m.parents == (-1,)
    Rz = axis_rot("Z", 90)
    # Hips at (x, y, z) = (2, 3, 1) turned 90 deg about Z; Spine's local position (0, 12|13, 0) turned with it
    assert np.allclose(m.translation, [[2 - 12, 3, 1], [2 - 13, 3, 1]])
    assert np.allclose(m.rotations[0, 0], Rz) and np.allclose(m.rotations[1, 0], Rz @ axis_rot("Z", 5))


def test_a_translating_joint_beside_other_branches_is_a_clear_error(tmp_path):
    text = HAND_WRITTEN.replace("  JOINT Spine", "  JOINT Leg\n  {\n    OFFSET 0 -10 0\n    CHANNELS 1 Xrotation\n"
                                "    End Site\n    {\n      OFFSET 0 -5 0\n    }\n  }\n  JOINT Spine")
    (tmp_path / "b.bvh").write_text(text.replace("FRAMES", "0 0 0 0 0 0 0 0 12 0 0 0\n0 0 0 0 0 0 0 0 13 0 0 0"))
    with pytest.raises(MotionError, match="joint Spine has animated position channels below Hips, which has other children") as e:
        read_bvh(tmp_path / "b.bvh")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("frames,header,message", [
    (["0 0 0 0 0 0 0 12 0 0 0", "0 0 0 0 0 0 0 12 0 0"], 2, r"line 20: frame 1 has 10 values, the hierarchy has 11 channels"),
    (["0 0 0 0 0 0 0 12 0 0 0", "0 0 0 0 abc 0 0 12 0 0 0"], 2, r"line 20: value 'abc' for channel Hips.Zrotation is not a number"),
    (["0 0 0 0 0 0 0 12 0 0 0"], 2, r"declares Frames: 2 but there are 1 frame lines"),
    (["0 0 0 0 0 0 0 12 0 0 0", "0 0 0 0 0 nan 0 12 0 0 0"], 2, r"line 20: channel Hips.Yrotation is not finite"),
])
def test_broken_frames_give_one_line_errors(tmp_path, frames, header, message):
    with pytest.raises(MotionError, match=message) as e:
        read_bvh(hand_written(tmp_path, frames, header))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,message", [
    (HAND_WRITTEN.split("MOTION")[0], "no MOTION section"),
    ("hello\n", "must start with HIERARCHY"),
    (HAND_WRITTEN.replace("Xrotation Zrotation\n", "Xrotation Qrotation\n"), "line 9: unknown channel 'Qrotation'"),
    (HAND_WRITTEN.replace("OFFSET 0 10 0", "OFFSET 0 ten 0"), "line 8: OFFSET needs 3 numbers"),
    (HAND_WRITTEN.replace("Frame Time: 0.1", "Frame Time: fast"), "'Frame Time:' needs a number"),
    (HAND_WRITTEN.replace("  }\n}\nMOTION", "  }\nMOTION"), "1 unclosed"),
    (HAND_WRITTEN.replace("JOINT Spine", "JOINT Hips"), "line 6: joint name 'Hips' is used twice"),
])
def test_broken_files_give_one_line_errors(tmp_path, text, message):
    (tmp_path / "b.bvh").write_text(text.replace("FRAMES", "0 0 0 0 0 0 0 12 0 0 0\n0 0 0 0 0 0 0 12 0 0 0"))
    with pytest.raises(MotionError, match=message) as e:
        read_bvh(tmp_path / "b.bvh")
    assert "\n" not in str(e.value)


def test_fps_from_printed_frame_time():
    assert fps_from_frame_time("0.033333") == 30.0 and fps_from_frame_time("0.016667") == 60.0
    assert fps_from_frame_time("0.0334") == pytest.approx(1 / 0.0334)  # 1/30 at 4 decimals would print 0.0333
    assert fps_from_frame_time("0.008333333") == 120.0


# ------------------------------------------------------------------------------------------- real Blender
def blender_import(path):
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_anim.bvh(filepath=str(path), axis_forward="-Z", axis_up="Y", global_scale=1.0,
                                     rotate_mode="NATIVE", use_fps_scale=False, update_scene_fps=True)
    assert result == {"FINISHED"}
    scene = bpy.context.scene
    (armature,) = [o for o in scene.objects if o.type == "ARMATURE"]
    return bpy, scene, armature


def blender_heads_in_our_axes(scene, armature, names, frame):
    scene.frame_set(frame)
    heads = np.array([list(armature.matrix_world @ armature.pose.bones[n].head) for n in names])
    return np.stack([heads[:, 0], heads[:, 2], -heads[:, 1]], 1)  # Blender (x, y, z) = ours (x, -z, y)


@pytest.mark.bpy
def test_blender_imports_our_bvh_where_our_kinematics_puts_it(amass_motion, tmp_path):
    m = Motion(amass_motion.rotations[:60], amass_motion.translation[:60], amass_motion.fps)
    write_bvh(tmp_path / "amass60.bvh", m)
    bpy, scene, armature = blender_import(tmp_path / "amass60.bvh")
    assert scene.render.fps == 30 and scene.render.fps_base == 1.0
    action = armature.animation_data.action
    assert tuple(action.frame_range) == (scene.frame_start, scene.frame_start + 59)
    ours = positions(m)
    for f in (0, 1, 17, 42, 59):
        err = np.abs(blender_heads_in_our_axes(scene, armature, m.joint_names, scene.frame_start + f) - ours[f]).max()
        assert err < 1e-4, (f, err)


@pytest.mark.bpy
def test_blender_reads_reference_file_like_we_do():
    path = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    m = read_bvh(path)
    bpy, scene, armature = blender_import(path)
    ours = positions(m)
    for f in (0, 50, 99):
        err = np.abs(blender_heads_in_our_axes(scene, armature, m.joint_names, scene.frame_start + f) - ours[f]).max()
        assert err < 1e-4, (f, err)


def test_lines_after_the_declared_frames_are_not_frames(tmp_path):
    """QAvimator writes its key list after the frames; Blender's importer, like this one, stops at Frames."""
    path = hand_written(tmp_path, ["0 0 0 0 0 0 0 12 0 0 0", "0 0 0 0 0 0 0 12 0 0 0", "1", "2 5 7"])
    assert read_bvh(path).num_frames == 2

"""Long motions in real bpy: a rig's action read back to SMPL-22, Continue, timelines from markers and text, and the
headless batch's --timeline / --continue, through the backend on the tiny model."""
import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import rigs  # noqa: E402  (tests/rigs.py)
from conftest import BACKEND_PYTHON as PY, ROOT, run_batch, shared_path  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import compat, long as mm_long, props as mm_props, session as mm_session  # noqa: E402
from retarget import formats, interchange, metrics  # noqa: E402
from retarget.continuation import frame_steps  # noqa: E402
from retarget.inverse import ANCHOR, motion_from_pose  # noqa: E402
from retarget.mapping import auto_map  # noqa: E402
from retarget.motion import Motion  # noqa: E402
from retarget.transfer import pose_world, retarget  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def addon():
    blender_addon.register()
    yield
    blender_addon.unregister()


@pytest.fixture(scope="module")
def amass():
    d = np.load(shared_path("data", "motion272", "amass_000000_motion.npz"))
    return Motion(d["rotations"], d["translation"], float(d["fps"]))


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """The add-on on the tiny conformance model and this checkout's backend (as tests/test_addon.py), one service for
    the module: starting it is most of a request's time on the tiny model."""
    model = shared_path("conformance", "motionmillion-tiny", "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTIONMILL_DATA", str(tmp_path_factory.mktemp("long-data")))
        mp.setattr(blender_addon.ops, "WAIT_S", 120.0)
        mm_props.Prefs.overrides = dict(backend_python=PY, backend_dir=str(ROOT), model_dir=str(model), device="cpu")
        yield model
        mm_session.SESSION.close()
        mm_props.Prefs.overrides = {}


@pytest.fixture
def mixamo():
    rigs.clear_scene()
    obj = rigs.mixamo_rig()
    scene = bpy.context.scene
    for m in list(scene.timeline_markers):
        scene.timeline_markers.remove(m)
    s = scene.motionmill
    s.target, s.cleanup_feet, s.placement, s.root_motion, s.reduce_keys = obj, False, "INSERT", "hips", False
    s.prompt, s.prompt_text, s.auto_length, s.seconds, s.seed = "", None, False, 2.0, 0
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_current = 1
    return obj


def _import(obj, motion, tmp_path, name, frame=1):
    path = tmp_path / f"{name}.npz"
    interchange.save_motion(str(path), motion)
    bpy.context.scene.frame_current = frame
    assert bpy.ops.motionmill.import_motion(filepath=str(path), placement="INSERT") == {"FINISHED"}
    return obj.animation_data.action


def _keys(action):
    return {(fc.data_path, fc.array_index): [tuple(k.co) + tuple(k.handle_left) + tuple(k.handle_right)
                                             for k in fc.keyframe_points] for fc in compat.all_fcurves(action)}


def _world(obj, names, frame):
    bpy.context.scene.frame_set(frame)
    W = rigs.read_world_pose(obj, names)
    return W[:, :3, :3] / np.linalg.norm(W[:, :3, :3], axis=1, keepdims=True), W[:, :3, 3]


# ------------------------------------------------------------------------------------------ the inverse retarget

@pytest.mark.parametrize("name", ["mixamo", "ue5", "daz_g8", "vrm"])
def test_a_rigs_action_reads_back_to_the_source(amass, tmp_path, name):
    """The real AMASS clip retargeted onto a rig and keyed, read back from what Blender evaluates: limbs within the
    limits the forward retarget meets (mean <= 3 deg), and the same pelvis path and heading."""
    rigs.clear_scene()
    obj = rigs.RIGS[name]()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.motionmill.target, scene.motionmill.reduce_keys, scene.motionmill.cleanup_feet = obj, False, False
    src = Motion(amass.rotations[::4], amass.translation[::4], 30.0)   # every 4th frame: the whole take, in 322
    action = _import(obj, src, tmp_path, name)
    lo, hi = mm_long.action_end(action)
    back = mm_long.motion_from_rig(scene, obj, range(lo, hi + 1))
    assert back.num_frames == src.num_frames and back.fps == 30.0
    ss, sm, ps = metrics.source_world(src)
    _, _, pb = metrics.source_world(back)
    roles = metrics.role_indices(ss, sm)
    err = metrics.limb_direction_error(ps, roles, pb, roles)
    assert err.mean() <= 3.0 and np.percentile(err, 95) <= 10.0
    # the pelvis travels as the source did: ground displacement from frame 0 within 2 cm, height change within 2 cm
    pel = roles["pelvis"]
    assert np.abs((pb[:, pel] - pb[0, pel]) - (ps[:, pel] - ps[0, pel])).max() < 0.02
    # the rig's rest pelvis stands at the SMPL x/z origin (ANCHOR): retargeting the read-back with it lands in place
    skel = rigs.skeleton_from_object(obj)
    mp = auto_map(skel)
    _, X = pose_world(retarget(back, skel, mp, anchor=ANCHOR), skel)
    _, X0 = _world(obj, skel.names, lo + 100)
    i = skel.names.index(mp.roles["pelvis"])
    assert np.linalg.norm(X[100, i, :2] - X0[i, :2]) < 0.01


def test_inverse_of_the_retarget_in_numpy_is_exact(amass):
    """Without Blender's float32 in between, the read-back limbs agree to a hundredth of a degree."""
    rigs.clear_scene()
    skel = rigs.skeleton_from_object(rigs.ue5_rig())
    src = Motion(amass.rotations[::10], amass.translation[::10], 30.0)
    R, X = pose_world(retarget(src, skel, twist="drive"), skel)
    back = motion_from_pose(skel, R, X, 30.0)
    ss, sm, ps = metrics.source_world(src)
    roles = metrics.role_indices(ss, sm)
    assert metrics.limb_direction_error(ps, roles, metrics.source_world(back)[2], roles).max() < 0.1


# ------------------------------------------------------------------------------------------ continue

def test_continue_without_the_backend_carries_on_where_the_action_ends(amass, mixamo, tmp_path):
    """A take cut in two: the first part as the animator's action, the second read back and handed to
    continue_action as the backend would return it. The continued action plays the old keys, then what the whole take
    plays: the continuation lands where the action ended, facing the same way."""
    scene = bpy.context.scene
    whole = Motion(amass.rotations[:240:2], amass.translation[:240:2], 15.0)
    part = Motion(whole.rotations[:60], whole.translation[:60], 15.0)
    full_action = _import(mixamo, whole, tmp_path, "whole")
    lo, hi = mm_long.action_end(full_action)
    full_back = mm_long.motion_from_rig(scene, mixamo, range(lo, hi + 1))       # scene rate: 24 fps
    skel = rigs.skeleton_from_object(mixamo)
    want = {f: _world(mixamo, skel.names, f) for f in (lo + 96, lo + 150)}
    old = _import(mixamo, part, tmp_path, "part")
    before = _keys(old)
    lo, end = mm_long.action_end(old)
    assert (lo, end) == (1, 1 + 94)                      # 60 frames at 15 fps = 95 at 24 fps
    rest = Motion(full_back.rotations[end:], full_back.translation[end:], 24.0)   # frames after `end`
    new, anim = mm_long.continue_action(scene, mixamo, old, end, rest, "part + more")
    assert mixamo.animation_data.action == new and new != old and old.use_fake_user
    assert _keys(old) == before                          # the animator's action is untouched
    after = _keys(new)
    assert all(after[k][:len(v)] == v for k, v in before.items())   # and its keys are the new action's first ones
    for f, (R, X) in want.items():
        R2, X2 = _world(mixamo, skel.names, f)
        assert np.abs(X2 - X).max() < 0.01 and np.abs(R2 - R).max() < 0.02


def _character(kind, tmp_path):
    """A 0.01-scaled character: the Mixamo-style rig through Blender's glTF exporter and importer, or a real FBX
    character from the corpus (tests/data/real)."""
    if kind == "gltf":
        return rigs.variant("gltf", "mixamo", tmp_path)
    import real_assets
    entry = next(e for e in real_assets.manifest("characters") if e["file"] == kind)
    real_assets.import_character(bpy, entry, tmp_path)
    return bpy.data.objects[entry["armature"]]


@pytest.mark.parametrize("kind", ["gltf", "quaternius_animated_woman.fbx"])
def test_continue_on_a_scaled_character_joins_where_the_action_ends(amass, tmp_path, kind):
    """Continue on an armature scaled 0.01 starts at the rig's last pose in world space: the first new frame is within
    1 cm and 1 degree of the last old one moved by one frame of the take's own motion."""
    obj = _character(kind, tmp_path)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    s = scene.motionmill
    s.target, s.cleanup_feet, s.placement, s.root_motion, s.reduce_keys = obj, False, "INSERT", "hips", False
    assert abs(rigs.skeleton_from_object(obj).object_scale - 0.01) < 1e-6
    whole = Motion(amass.rotations[:240], amass.translation[:240], 30.0)
    full_action = _import(obj, whole, tmp_path, "whole")
    lo, hi = mm_long.action_end(full_action)
    full_back = mm_long.motion_from_rig(scene, obj, range(lo, hi + 1))
    skel = rigs.skeleton_from_object(obj)
    names = sorted(set(auto_map(skel).roles.values()))
    old = _import(obj, Motion(whole.rotations[:120], whole.translation[:120], 30.0), tmp_path, "part")
    _, end = mm_long.action_end(old)
    mm_long.continue_action(scene, obj, old, end, Motion(full_back.rotations[end:], full_back.translation[end:], 30.0),
                            "part + more")
    (R0, X0), (R1, X1) = _world(obj, names, end), _world(obj, names, end + 1)
    obj.animation_data.action = full_action
    (W0, Y0), (W1, Y1) = _world(obj, names, end), _world(obj, names, end + 1)
    step = np.linalg.norm((X1 - X0) - (Y1 - Y0), axis=-1).max()      # metres: the join against the take's own step
    # each bone's turn over the join against its turn over the take's own frame step
    off = (R1 @ np.swapaxes(R0, -1, -2)) @ np.swapaxes(W1 @ np.swapaxes(W0, -1, -2), -1, -2)
    turn = np.degrees(np.arccos(np.clip((np.trace(off, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))
    print(f"{kind}: join step off by {100 * step:.2f} cm, turn off by {turn.max():.2f} deg")
    assert step < 0.01 and turn.max() < 1.0


@pytest.fixture
def animators_action(mixamo, amass, tmp_path):
    """An action as an animator might leave it: keyed, some bones in Euler, a finger-like helper holding a pose."""
    action = _import(mixamo, Motion(amass.rotations[:90:3], amass.translation[:90:3], 10.0), tmp_path, "take")
    fcurves = compat.fcurves_for(action, getattr(mixamo.animation_data, "action_slot", None))
    for name in ("mixamorig:Head", "mixamorig:LeftForeArm"):      # hand-keyed in Euler, with automatic Bezier handles
        path = f'pose.bones["{name}"].rotation_quaternion'
        for fc in [fc for fc in fcurves if fc.data_path == path]:
            fcurves.remove(fc)
        pb = mixamo.pose.bones[name]
        pb.rotation_mode = "XYZ"
        for f, x in ((1, 0.1), (20, 0.5), (37, -0.2)):
            pb.rotation_euler = (x, 0.2, -x)
            pb.keyframe_insert("rotation_euler", frame=f, group=name)
    path = 'pose.bones["mixamorig:LeftToe_End"].rotation_quaternion'
    for fc in [fc for fc in fcurves if fc.data_path == path]:
        fcurves.remove(fc)
    mixamo.pose.bones["mixamorig:LeftToe_End"].rotation_quaternion = (0.9, 0.3, 0.0, 0.0)   # unkeyed, holds a pose
    return action


def test_continue_with_the_backend(backend, mixamo, animators_action):
    scene = bpy.context.scene
    old = animators_action
    before = _keys(old)
    lo, end = mm_long.action_end(old)
    skel = rigs.skeleton_from_object(mixamo)
    pelvis = skel.names.index("mixamorig:Hips")
    old_path = np.array([_world(mixamo, skel.names, f)[1][pelvis] for f in range(lo, end + 1)])
    s = scene.motionmill
    s.prompt, s.seconds = "the person turns and runs back", 2.0
    assert bpy.ops.motionmill.continue_action() == {"FINISHED"}
    new = mixamo.animation_data.action
    assert new != old and new.name.startswith(old.name + " + ") and old.use_fake_user and _keys(old) == before
    clip = formats.load_any(new["motionmill_path"])
    n = int(round((clip.num_frames - 1) * 24 / clip.fps)) + 1
    assert mm_long.action_end(new) == (lo, end + n)
    assert new["motionmill_continued_from"] == old.name and [m.frame for m in new.pose_markers] == [end + 1]
    # what the backend continued: the rig's action as SMPL-22, written to the clips folder
    sent = sorted((formats.load_any(p) for p in _continue_inputs()), key=lambda m: m.num_frames)[-1]
    assert sent.num_frames == end - lo + 1 and sent.fps == 24.0
    # the seam: the pelvis steps no further than the action's own ordinary steps
    step = np.linalg.norm(_world(mixamo, skel.names, end + 1)[1][pelvis] - old_path[-1])
    ordinary = np.percentile(np.linalg.norm(np.diff(old_path, axis=0), axis=-1), 95)
    assert step <= 3 * ordinary + 1e-3
    # the continuation is the clip retargeted from where the action ended
    anim = retarget(clip.resample(24.0), skel, auto_map(skel), anchor=ANCHOR)
    R, X = pose_world(anim, skel)
    for f in (0, n // 2, n - 1):
        R2, X2 = _world(mixamo, skel.names, end + 1 + f)
        np.testing.assert_allclose(X2, X[f], atol=2e-4)
    assert s.history[-1].action == new
    head = mixamo.pose.bones["mixamorig:Head"]
    assert head.rotation_mode == "XYZ"                    # Euler bones are continued in Euler
    _world(mixamo, skel.names, end + n // 2)
    assert tuple(head.rotation_euler) != pytest.approx((-0.2, 0.2, 0.2))
    assert tuple(mixamo.pose.bones["mixamorig:LeftToe_End"].rotation_quaternion) == pytest.approx((0.9, 0.3, 0, 0), abs=1e-6)


def test_continue_with_reduce_keys_keys_few_frames_within_the_tolerance(amass, mixamo, animators_action):
    """Reduce keys on Continue: the continuation's quaternion and location channels get the Bezier keys Generate
    writes (a handful per bone, not one per frame), every frame of it within keying's tolerances of the exact
    continuation; the old keys stay first and unchanged, and the animator's Euler bones get a key per frame."""
    from blender_addon import keying
    scene = bpy.context.scene
    old = animators_action
    before = _keys(old)
    lo, end = mm_long.action_end(old)
    rest = Motion(amass.rotations[300:420:2], amass.translation[300:420:2], 15.0)
    exact, anim = mm_long.continue_action(scene, mixamo, old, end, rest, "exact")
    reduced, _ = mm_long.continue_action(scene, mixamo, old, end, rest, "reduced", reduce_keys=True)
    assert _keys(old) == before and reduced["motionmill_reduced_keys"] and not exact["motionmill_reduced_keys"]
    n = anim.num_frames
    assert mm_long.action_end(reduced) == mm_long.action_end(exact) == (lo, end + n)
    ek, rk = _keys(exact), _keys(reduced)
    assert ek.keys() == rk.keys() and all(rk[k][:len(v)] == v for k, v in before.items())
    new_keys = {k: len(rk[k]) - len(before.get(k, [])) for k in rk}
    head = 'pose.bones["mixamorig:Head"].rotation_euler'
    assert all(new_keys[(head, i)] == n for i in range(3))                 # Euler: a key per frame
    quat = [k for k in rk if k[0].endswith("rotation_quaternion")]
    generated, _ = keying.key_animation(mixamo, anim, "as Generate keys it", 1, assign=False, reduce_keys=True)
    as_generated = {k: len(v) for k, v in _keys(generated).items()}
    assert all(new_keys[k] == as_generated[k] for k in quat if new_keys[k])      # the same reduction, key for key
    assert sum(new_keys[k] for k in quat) < 0.5 * n * sum(1 for k in quat if new_keys[k])
    curves = {(fc.data_path, fc.array_index): fc for fc in compat.all_fcurves(reduced)}
    exact_curves = {(fc.data_path, fc.array_index): fc for fc in compat.all_fcurves(exact)}
    frames = range(end + 1, end + n + 1)
    worst_angle = worst_move = 0.0
    for bone in {k[0].rsplit(".", 1)[0] for k in quat}:
        qa = np.array([[curves[(bone + ".rotation_quaternion", i)].evaluate(f) for i in range(4)] for f in frames])
        qb = np.array([[exact_curves[(bone + ".rotation_quaternion", i)].evaluate(f) for i in range(4)] for f in frames])
        qa /= np.linalg.norm(qa, axis=1, keepdims=True)
        qb /= np.linalg.norm(qb, axis=1, keepdims=True)
        worst_angle = max(worst_angle, np.degrees(2 * np.arccos(np.clip(np.abs((qa * qb).sum(1)), 0, 1))).max())
        if (bone + ".location", 0) in curves:
            la = np.array([[curves[(bone + ".location", i)].evaluate(f) for i in range(3)] for f in frames])
            lb = np.array([[exact_curves[(bone + ".location", i)].evaluate(f) for i in range(3)] for f in frames])
            worst_move = max(worst_move, np.linalg.norm(la - lb, axis=1).max())
    print(f"reduced continuation: {sum(new_keys[k] for k in quat)} quaternion keys for {n} frames x "
          f"{sum(1 for k in quat if new_keys[k])} driven channels; worst {worst_angle:.3f} deg, {worst_move * keying.object_scale(mixamo) * 1000:.3f} mm")
    assert worst_angle <= keying.ROTATION_TOLERANCE_DEG * 1.01
    assert worst_move * keying.object_scale(mixamo) <= keying.LOCATION_TOLERANCE_M * 1.01


def _continue_inputs():
    import glob
    import os
    return glob.glob(os.path.join(os.environ["MOTIONMILL_DATA"], "clips", "continue-*.npz"))


def test_continue_needs_an_action_and_a_prompt(backend, mixamo):
    """Continue is greyed out (its poll fails, the tooltip says why) on a rig without an active action."""
    s = bpy.context.scene.motionmill
    s.prompt = "walk on"
    assert not bpy.ops.motionmill.continue_action.poll()
    with pytest.raises(RuntimeError, match="no active action to continue"):
        bpy.ops.motionmill.continue_action()
    mixamo.animation_data_create().action = bpy.data.actions.new("take")
    assert bpy.ops.motionmill.continue_action.poll()
    s.prompt = ""
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.motionmill.continue_action()


# ------------------------------------------------------------------------------------------ timelines

def test_timeline_from_markers(backend, mixamo):
    scene = bpy.context.scene
    prompts = ["a person walks to a chair", "a person sits down", "a person waves"]
    for f, p in zip((10, 58, 94), prompts):
        scene.timeline_markers.new(p, frame=f)
    scene.timeline_markers.new("F_120", frame=120)       # Blender's default name: not a prompt
    scene.motionmill.seconds = 1.0
    assert mm_long.marker_segments(scene, 1.0) == (10, [(2.0, prompts[0]), (1.5, prompts[1]), (1.0, prompts[2])])
    assert bpy.ops.motionmill.generate_timeline(source="MARKERS") == {"FINISHED"}
    action = mixamo.animation_data.action
    clip = formats.load_any(action["motionmill_path"])
    n = int(round((clip.num_frames - 1) * 24 / clip.fps)) + 1
    assert abs(clip.num_frames - 4.5 * 30) <= 2 * 3
    assert tuple(action.frame_range) == (10, 10 + n - 1)     # one action, from the first marker on
    marks = sorted((m.frame, m.name) for m in action.pose_markers)
    assert [m[1] for m in marks] == prompts
    assert all(abs(f - want) <= 2 for (f, _), want in zip(marks, (10, 58, 94)))
    skel = rigs.skeleton_from_object(mixamo)
    R, X = pose_world(retarget(clip.resample(24.0), skel, auto_map(skel)), skel)
    for f in (0, n // 2, n - 1):
        np.testing.assert_allclose(_world(mixamo, skel.names, 10 + f)[1], X[f], atol=2e-4)


def test_timeline_from_a_text_block_and_its_errors(backend, mixamo):
    scene = bpy.context.scene
    s = scene.motionmill
    with pytest.raises(RuntimeError, match="no timeline markers named with prompts"):
        bpy.ops.motionmill.generate_timeline(source="MARKERS")
    text = bpy.data.texts.new("timeline")
    text.from_string("# walk, then jump\n1.5 a person walks\n\n1s a person jumps\n")
    s.prompt_text, s.placement = text, "NLA"
    scene.frame_current = 30
    assert bpy.ops.motionmill.generate_timeline(source="TEXT") == {"FINISHED"}
    strip = mixamo.animation_data.nla_tracks["MotionMill"].strips[-1]
    assert strip.frame_start == 30
    assert [m.name for m in sorted(strip.action.pose_markers, key=lambda m: m.frame)] == ["a person walks", "a person jumps"]
    text.from_string("1.5 a person walks\nsoon a person jumps\n")
    with pytest.raises(RuntimeError, match="line 2: expected `SECONDS PROMPT`"):
        bpy.ops.motionmill.generate_timeline(source="TEXT")


# ------------------------------------------------------------------------------------------ headless

@pytest.fixture
def take_blend(mixamo, amass, tmp_path):
    """The Mixamo rig with a keyed take as its active action, in a 25 fps scene starting at frame 10."""
    scene = bpy.context.scene
    scene.render.fps, scene.frame_start = 25, 10
    _import(mixamo, Motion(amass.rotations[:60:2], amass.translation[:60:2], 15.0), tmp_path, "take", frame=10)
    path = tmp_path / "take.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    return path


def test_batch_timeline_and_continue(backend, take_blend, tmp_path):
    timeline = tmp_path / "walk_wave.txt"
    timeline.write_text("1.5 a person walks forward\n1 a person waves\n")
    common = ["--blend", take_blend, "--rig", "Mixamo", "--model-dir", backend, "--device", "cpu", "--python", PY]
    out = tmp_path / "timeline.blend"
    r = run_batch(common + ["--timeline", timeline, "--out", out])
    assert r.returncode == 0, r.stderr
    bpy.ops.wm.open_mainfile(filepath=str(out))
    strip = bpy.data.objects["Mixamo"].animation_data.nla_tracks["MotionMill"].strips[0]
    assert strip.frame_start == 10
    assert [m.name for m in sorted(strip.action.pose_markers, key=lambda m: m.frame)] == [
        "a person walks forward", "a person waves"]
    out = tmp_path / "continued.blend"
    r = run_batch(common + ["--continue", "--prompt", "the person sits down", "--seconds", "1", "--out", out])
    assert r.returncode == 0, r.stderr
    bpy.ops.wm.open_mainfile(filepath=str(out))
    obj = bpy.data.objects["Mixamo"]
    new, old = obj.animation_data.action, bpy.data.actions["take"]
    assert new.name == "take + the person sits down" and new["motionmill_continued_from"] == "take"
    assert mm_long.action_end(new)[1] > mm_long.action_end(old)[1] == 10 + 48
    # chained as the docs chain them: the batch's own output (clips on NLA strips, no active action) continues its
    # last strip's action
    chained = tmp_path / "chained.blend"
    r = run_batch(["--blend", out, "--rig", "Mixamo", "--model-dir", backend, "--device", "cpu", "--python", PY,
                   "--motion", str(shared_path("data", "motion272", "amass_000000_motion.npz")), "--out", chained])
    assert r.returncode == 0, r.stderr
    bpy.ops.wm.open_mainfile(filepath=str(chained))
    obj = bpy.data.objects["Mixamo"]
    obj.animation_data.action = None
    bpy.ops.wm.save_as_mainfile(filepath=str(chained))
    again = tmp_path / "again.blend"
    r = run_batch(["--blend", chained, "--rig", "Mixamo", "--model-dir", backend, "--device", "cpu", "--python", PY,
                   "--continue", "--prompt", "the person waves", "--seconds", "1", "--out", again])
    assert r.returncode == 0, r.stderr
    assert "continuing its last MotionMill strip" in r.stdout
    bpy.ops.wm.open_mainfile(filepath=str(again))
    new = bpy.data.objects["Mixamo"].animation_data.action
    assert new is not None and new["motionmill_continued_from"] == "amass_000000_motion"

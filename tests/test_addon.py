"""The Blender add-on in real bpy: operators, keying against retarget's own pose, the backend end to end."""
import os
import re
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import rigs  # noqa: E402  (tests/rigs.py)
from conftest import BACKEND_PYTHON as PY, ROOT, run_batch, shared_path  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import props as mm_props, session as mm_session  # noqa: E402
from retarget import formats  # noqa: E402
from retarget.mapping import auto_map  # noqa: E402
from retarget.transfer import pose_world, retarget  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def addon():
    blender_addon.register()
    yield
    blender_addon.unregister()


@pytest.fixture
def backend(tmp_path, monkeypatch):
    """Point the add-on at the tiny conformance model and the repo's backend; shut the service down after."""
    model = shared_path("conformance", "motionmillion-tiny", "model")
    monkeypatch.setenv("MOTIONMILL_DATA", str(tmp_path / "data"))
    mm_props.Prefs.overrides = dict(backend_python=PY, backend_dir=str(ROOT), model_dir=str(model), device="cpu")
    monkeypatch.setattr(blender_addon.ops, "WAIT_S", 120.0)
    yield model
    mm_session.SESSION.close()
    mm_props.Prefs.overrides = {}


@pytest.fixture
def mixamo():
    rigs.clear_scene()
    obj = rigs.mixamo_rig()
    scene = bpy.context.scene
    scene.motionmill.target = obj
    scene.motionmill.cleanup_feet, scene.motionmill.placement, scene.motionmill.root_motion = False, "INSERT", "hips"
    scene.motionmill.reduce_keys = False     # these check the exact bake against retarget; test_keys checks reduction
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_current = 1
    return obj


def _generate_batch_from(path):
    """Generate Batch as the panel runs it: the prompts file's lines in a Text block."""
    text = bpy.data.texts.new("prompts")
    text.from_string(path.read_text())
    bpy.context.scene.motionmill.prompt_text, bpy.context.scene.motionmill.prompt = text, ""
    return bpy.ops.motionmill.generate_batch()


def _check_pose(obj, motion, fps, start, frames, root_motion="hips"):
    """Blender's evaluated pose == retarget.transfer.pose_world of the same retarget, at sampled frames."""
    skel = rigs.skeleton_from_object(obj)
    anim = retarget(motion.resample(fps), skel, auto_map(skel), root_motion=root_motion)
    R, X = pose_world(anim, skel)
    for f in frames:
        bpy.context.scene.frame_set(start + f)
        W = rigs.read_world_pose(obj, skel.names)
        rot = W[:, :3, :3] / np.linalg.norm(W[:, :3, :3], axis=1, keepdims=True)
        np.testing.assert_allclose(rot, R[f], atol=2e-4)
        np.testing.assert_allclose(W[:, :3, 3], X[f], atol=2e-4)
    return anim


# ------------------------------------------------------------------------------------------ registration

def test_register_unregister_leaves_nothing():
    classes = blender_addon._classes()
    assert len(classes) > 15 and all(c.is_registered for c in classes)
    assert hasattr(bpy.types.Scene, "motionmill")
    assert hasattr(bpy.ops.motionmill, "generate_batch")
    blender_addon.unregister()
    try:
        assert not hasattr(bpy.types.Scene, "motionmill")
        assert not hasattr(bpy.types.WindowManager, "motionmill")
        assert not any(c.is_registered for c in classes)
        assert not hasattr(bpy.types, "MOTIONMILL_PT_panel")
        assert mm_session.SESSION.client is None
        assert not any("motionmill" in repr(t) for t in getattr(bpy.app.timers, "_registered", ()))
    finally:
        blender_addon.register()


def test_importing_the_package_does_not_import_bpy():
    import subprocess
    code = "import sys, blender_addon, blender_addon.client; print('bpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ import / keying

FILES = [("motion272", "amass_000000_motion.npz"), ("motion272", "amass_000000.npy"),
         ("amass", "amass_test_smplh.npz"), ("bvh", "motionmillion_case1_0_predict.bvh")]


@pytest.mark.parametrize("parts", FILES, ids=[p[1] for p in FILES])
def test_import_motion_each_format_matches_retarget(mixamo, parts):
    path = shared_path("data", *parts)
    keep = bpy.data.actions.new("amass_000000_motion")   # a user's action with the same name: must stay untouched
    keep["mine"] = 1
    bpy.context.scene.frame_current = 7
    assert bpy.ops.motionmill.import_motion(filepath=str(path)) == {"FINISHED"}
    action = mixamo.animation_data.action
    assert action is not None and action != keep and keep.get("mine") == 1 and "motionmill_path" not in keep
    motion = formats.load_any(str(path))
    n = int(round((motion.num_frames - 1) * 24 / motion.fps)) + 1
    assert tuple(action.frame_range) == (7, 7 + n - 1)   # real-time speed at 24 fps, starting at the current frame
    assert bpy.context.scene.frame_end >= 7 + n - 1        # the scene's range grows to play the whole clip
    _check_pose(mixamo, motion, 24.0, 7, [0, n // 3, n - 1])


def test_import_root_motion_in_place_and_root(mixamo):
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    bpy.context.scene.motionmill.root_motion = "in_place"
    try:
        assert bpy.ops.motionmill.import_motion(filepath=str(path), placement="INSERT") == {"FINISHED"}
        _check_pose(mixamo, formats.load_any(str(path)), 24.0, 1, [0, 40], root_motion="in_place")
    finally:
        bpy.context.scene.motionmill.root_motion = "hips"


def test_previous_action_is_kept(mixamo):
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    bpy.ops.motionmill.import_motion(filepath=str(path))
    first = mixamo.animation_data.action
    bpy.ops.motionmill.import_motion(filepath=str(path))
    second = mixamo.animation_data.action
    assert second != first and first.name in bpy.data.actions and first.use_fake_user


@pytest.mark.parametrize("placement", ["INSERT", "NLA"])
def test_channels_only_the_animators_action_keys_do_not_play_into_the_clip(mixamo, placement):
    """The animator's action keys the head's location and scale, which a clip leaves alone: as the active action it
    is replaced (its last pose would stay on those channels), as a strip it is pushed down below the clip (it would
    play through). Either way the clip holds them at rest (RobotExpressive's death take carried its head away)."""
    from blender_addon import compat
    head = mixamo.pose.bones["mixamorig:Head"]
    mine = bpy.data.actions.new("death")
    slot = compat.ensure_slot(mine, mixamo)
    for channel, value in (("location", (0.0, 30.0, 0.0)), ("scale", (1.5, 1.5, 1.5))):
        for i, v in enumerate(value):
            fc = compat.new_fcurve(compat.fcurves_for(mine, slot), f'pose.bones["mixamorig:Head"].{channel}', i,
                                   "mixamorig:Head")
            fc.keyframe_points.insert(1, v)
    compat.assign_action(mixamo, mine, slot)
    bpy.context.scene.frame_set(1)
    assert head.location[1] == pytest.approx(30.0)     # the animator's pose, before
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    assert bpy.ops.motionmill.import_motion(filepath=str(path), placement=placement) == {"FINISHED"}
    bpy.context.scene.frame_set(20)
    assert tuple(head.location) == pytest.approx((0.0, 0.0, 0.0)) and tuple(head.scale) == pytest.approx((1, 1, 1))
    assert mine.name in bpy.data.actions and len(compat.all_fcurves(mine)) == 6      # the animator's action: kept


def test_bad_input_is_reported(mixamo):
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    s = bpy.context.scene.motionmill
    s.target = None
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="no armature selected"):
        bpy.ops.motionmill.import_motion(filepath=str(path))
    mesh = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    bpy.context.scene.collection.objects.link(mesh)
    bpy.context.view_layer.objects.active = mesh
    with pytest.raises(RuntimeError, match="not an armature"):
        bpy.ops.motionmill.import_motion(filepath=str(path))
    bpy.context.view_layer.objects.active = mixamo
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.motionmill.import_motion(filepath="/nonexistent/clip.npz")
    s.target = mixamo
    s.prompt = "   "
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.motionmill.generate()


def test_cleanup_feet_on_existing_action(mixamo):
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    bpy.ops.motionmill.import_motion(filepath=str(path))
    before = mixamo.animation_data.action
    assert bpy.ops.motionmill.cleanup_feet() == {"FINISHED"}
    after = mixamo.animation_data.action
    assert after != before and after.frame_range[:] == before.frame_range[:] and before.name in bpy.data.actions


def test_smpl_armature_and_retarget_from_it(mixamo):
    path = shared_path("data", "motion272", "amass_000000_motion.npz")
    assert bpy.ops.motionmill.add_smpl_armature() == {"FINISHED"}
    smpl_obj = bpy.context.view_layer.objects.active
    assert smpl_obj.type == "ARMATURE" and len(smpl_obj.data.bones) == 22 and not smpl_obj.children
    bpy.context.scene.motionmill.target = smpl_obj
    bpy.ops.motionmill.import_motion(filepath=str(path))
    bpy.context.scene.motionmill.target = mixamo
    from blender_addon.smpl_rig import motion_from_armature
    motion = motion_from_armature(bpy.context.scene, smpl_obj, frames=range(1, 31))
    original = formats.load_any(str(path)).resample(24.0)
    # read back from the SMPL armature, the body pose (joints relative to the pelvis) is the clip's; the root's
    # height is the retarget's (kept relative to each body's rest height), so it is not compared here
    from retarget import smpl
    _, p0 = smpl.forward_kinematics(original.rotations[:30], original.translation[:30], original.offsets, original.parents)
    _, p1 = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    np.testing.assert_allclose(p1 - p1[:, :1], p0 - p0[:, :1], atol=1e-4)
    assert bpy.ops.motionmill.retarget(source=smpl_obj.name) == {"FINISHED"}


# ------------------------------------------------------------------------------------------ backend

def test_generate_end_to_end(backend, mixamo):
    s = bpy.context.scene.motionmill
    s.prompt, s.seconds, s.seed, s.cleanup_feet, s.placement = "a person walks forward", 2.0, 3, False, "INSERT"
    s.auto_length = False
    bpy.context.scene.frame_current = 11
    assert bpy.ops.motionmill.generate() == {"FINISHED"}
    action = mixamo.animation_data.action
    assert action["motionmill_prompt"] == "a person walks forward" and action["motionmill_seed"] == 3
    assert action.name == "a person walks forward" and action["motionmill_model"]
    clip = formats.load_any(action["motionmill_path"])
    assert action["motionmill_path"].startswith(os.environ["MOTIONMILL_DATA"])
    n = int(round((clip.num_frames - 1) * 24 / clip.fps)) + 1
    assert tuple(action.frame_range) == (11, 11 + n - 1)
    _check_pose(mixamo, clip, 24.0, 11, [0, n // 2, n - 1])
    assert s.history[-1].action == action
    assert mm_session.SESSION.alive      # the model stays loaded for the next request
    pid = mm_session.SESSION.client.pid
    assert bpy.ops.motionmill.generate() == {"FINISHED"}
    assert mm_session.SESSION.client.pid == pid


def test_generate_batch_is_greyed_out_without_prompts_and_says_why(mixamo):
    s = bpy.context.scene.motionmill
    s.prompt_text = None
    assert not bpy.ops.motionmill.generate_batch.poll()
    with pytest.raises(RuntimeError, match="choose a Text block with one prompt per line"):
        bpy.ops.motionmill.generate_batch()
    s.prompt_text = bpy.data.texts.new("empty")
    s.prompt_text.from_string("# only a comment\n\n")
    with pytest.raises(RuntimeError, match="Text block 'empty' has no prompts"):
        bpy.ops.motionmill.generate_batch()
    s.prompt_text.from_string("a person waves\n")
    assert bpy.ops.motionmill.generate_batch.poll()
    s.prompt_text = None


def test_generate_batch_strips_in_order(backend, mixamo, tmp_path):
    prompts = ["a person waves", "a person jumps", "a person sits down"]
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(prompts) + "\n\n")
    s = bpy.context.scene.motionmill
    s.seconds, s.blend_in, s.blend_out = 2.0, 2.0, 3.0
    s.auto_length = False
    scene = bpy.context.scene
    scene.frame_current, scene.frame_start, scene.frame_end = 5, 3, 60
    assert _generate_batch_from(f) == {"FINISHED"}
    strips = list(mixamo.animation_data.nla_tracks["MotionMill"].strips)
    assert [st.name for st in strips] == prompts
    assert strips[0].frame_start == 5
    # the scene's range grows to play every strip, and never shrinks
    assert scene.frame_start == 3 and scene.frame_end == int(strips[-1].frame_end) > 60
    for a, b in zip(strips, strips[1:]):
        assert b.frame_start == a.frame_end + 1
    for st in strips:
        clip = formats.load_any(st.action["motionmill_path"])
        n = int(round((clip.num_frames - 1) * 24 / clip.fps)) + 1
        assert st.frame_end - st.frame_start == n - 1
        assert (st.blend_in, st.blend_out) == (2.0, 3.0)


def _keys(action):
    from blender_addon import compat
    return {(fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
            for fc in compat.all_fcurves(action)}


def _shows_its_own_keys(obj, strip, bone="mixamorig:Hips"):
    """At a strip's middle frame the rig's evaluated pose is the strip's own action there."""
    from blender_addon import compat
    mid = int((strip.frame_start + strip.frame_end) // 2)
    bpy.context.scene.frame_set(mid)
    got = tuple(obj.pose.bones[bone].rotation_quaternion)
    path = f'pose.bones["{bone}"].rotation_quaternion'
    curves = {fc.array_index: fc for fc in compat.all_fcurves(strip.action) if fc.data_path == path}
    want = tuple(curves[i].evaluate(strip.action_frame_start + mid - strip.frame_start) for i in range(4))
    return max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def test_a_batch_plays_over_the_animators_active_action(backend, mixamo, tmp_path):
    """After Generate (its clip is the active action), Generate Batch's strips play: the active action moves, unchanged,
    onto its own track below MotionMill's. Also when MotionMill's track is already the lowest (a batch came first)."""
    s = bpy.context.scene.motionmill
    s.prompt, s.placement, s.cleanup_feet, s.blend_in, s.blend_out = "a person walks", "INSERT", False, 0.0, 0.0
    s.auto_length, s.seconds = False, 2.0
    f = tmp_path / "prompts.txt"
    f.write_text("a person waves\na person jumps\n")
    for batch_first in (False, True):
        if batch_first:  # MotionMill's track exists and is the lowest when the animator's action arrives
            bpy.context.scene.frame_current = 200
            assert _generate_batch_from(f) == {"FINISHED"}
        bpy.context.scene.frame_current = 1
        assert bpy.ops.motionmill.generate() == {"FINISHED"}
        mine = mixamo.animation_data.action
        keys = _keys(mine)
        bpy.context.scene.frame_current = int(mine.frame_range[1]) + 1
        assert _generate_batch_from(f) == {"FINISHED"}
        ad = mixamo.animation_data
        names = [t.name for t in ad.nla_tracks]
        assert ad.action is None and names.index(mine.name) < names.index("MotionMill"), names
        assert _keys(mine) == keys  # the animator's action: kept, unchanged
        (held,) = ad.nla_tracks[mine.name].strips
        assert held.action == mine and held.extrapolation == "HOLD_FORWARD"   # no reset of what it alone keys
        strips = list(ad.nla_tracks["MotionMill"].strips)
        assert len(strips) == (4 if batch_first else 2)
        for strip in strips:
            assert _shows_its_own_keys(mixamo, strip), strip.name
        assert _shows_its_own_keys(mixamo, held)
        for t in list(ad.nla_tracks):
            ad.nla_tracks.remove(t)


def test_a_batch_strip_keeps_its_prompts_name_over_an_action_of_that_name(backend, mixamo, tmp_path):
    """Generate makes the action 'a person waves'; a batch of the same prompt pushes it down onto a strip of that name.
    Strip names are unique per rig: the held strip yields the name, the clip's strip keeps it (not '….001')."""
    s = bpy.context.scene.motionmill
    s.prompt, s.placement, s.cleanup_feet, s.auto_length, s.seconds = "a person waves", "INSERT", False, False, 2.0
    assert bpy.ops.motionmill.generate() == {"FINISHED"}
    mine = mixamo.animation_data.action
    assert mine.name == "a person waves"
    f = tmp_path / "prompts.txt"
    f.write_text("a person waves\n")
    bpy.context.scene.frame_current = int(mine.frame_range[1]) + 1
    assert _generate_batch_from(f) == {"FINISHED"}
    ad = mixamo.animation_data
    (strip,) = ad.nla_tracks["MotionMill"].strips
    assert strip.name == "a person waves" and strip.action != mine
    (held,) = ad.nla_tracks[mine.name].strips
    assert held.action == mine and held.name == "a person waves (held)"
    for t in list(ad.nla_tracks):
        ad.nla_tracks.remove(t)


def test_cancel_in_the_middle(backend, mixamo):
    s = bpy.context.scene.motionmill
    s.prompt, s.seconds = "a person runs in a circle", 10.0
    s.auto_length = False
    n_actions = len(bpy.data.actions)
    seen = []
    orig = mm_session.start_generate

    def start(*a, **k):
        job = orig(*a, **k)
        def on(ev):
            seen.append(ev)
            if ev.get("phase") == "decoding" and not any(e.get("cancel_sent") for e in seen):
                seen.append({"cancel_sent": True})
                job.cancel()
        job.listeners.append(on)
        return job
    mm_session.start_generate = start
    try:
        assert bpy.ops.motionmill.generate() == {"CANCELLED"}
    finally:
        mm_session.start_generate = orig
    assert any(e.get("cancel_sent") for e in seen)
    assert len(bpy.data.actions) == n_actions
    assert bpy.context.window_manager.motionmill.status == "cancelled"
    assert mm_session.SESSION.alive     # still usable
    s.seconds = 2.0
    s.auto_length = False
    assert bpy.ops.motionmill.generate() == {"FINISHED"}


def test_status_says_starting_only_until_the_backend_has_answered(backend, tmp_path):
    """The panel's first status: "starting the backend…" for a service that has not answered yet (python + torch are
    still loading), "queued…" once it has (seen in the windowed check: it said "starting" on every request)."""
    from blender_addon import ops
    mm_session.SESSION.close()
    ops.ensure_backend(bpy.context)
    job = mm_session.start_generate(mm_session.SESSION, ["a person waves"], str(tmp_path), seconds=1.0)
    assert job.status == "starting the backend…"
    phases = []
    job.listeners.append(lambda ev: phases.append(job.status))
    assert job.wait(120).result is not None, job.error
    # then what an animator reads: the model loading once, the prompt, the percentage, the writing
    assert "loading the model (first time only)…" in phases and "reading the prompt…" in phases, phases
    assert any(re.fullmatch(r"generating \d+%( · about \d+ s left)?", p) for p in phases), phases
    job = mm_session.start_generate(mm_session.SESSION, ["a person waves"], str(tmp_path), seconds=1.0)
    assert job.status == "queued…"
    assert job.wait(120).result is not None, job.error


def test_wrong_python_and_missing_model_dir(backend, mixamo, tmp_path):
    s = bpy.context.scene.motionmill
    s.prompt = "a person walks"
    mm_props.Prefs.overrides["backend_python"] = str(tmp_path / "no-python")
    with pytest.raises(RuntimeError, match="backend Python not found"):
        bpy.ops.motionmill.generate()
    mm_props.Prefs.overrides["backend_python"] = PY
    mm_props.Prefs.overrides["model_dir"] = str(tmp_path / "no-model")
    with pytest.raises(RuntimeError, match="model directory not found"):
        bpy.ops.motionmill.generate()


def test_backend_crash_is_reported_and_recovers(backend, mixamo, tmp_path):
    # a "python" that is not MotionMill's: the service dies at start-up with an import error
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.stderr.write(\"ModuleNotFoundError: "
                    f"No module named torch\\n\"); sys.exit(3)'\n")
    fake.chmod(0o755)
    s = bpy.context.scene.motionmill
    s.prompt, s.seconds = "a person walks", 2.0
    s.auto_length = False
    mm_props.Prefs.overrides["backend_python"] = str(fake)
    with pytest.raises(RuntimeError, match="backend.*(exited unexpectedly|not running|stopped reading).*No module named torch"):
        bpy.ops.motionmill.generate()
    assert bpy.context.window_manager.motionmill.running is False
    mm_props.Prefs.overrides["backend_python"] = PY
    assert bpy.ops.motionmill.generate() == {"FINISHED"}   # a fresh service after the crash


class _Drawn:
    """Records the labels a panel's draw asks for, (text, icon, alert); any other layout call is accepted."""

    def __init__(self, log, alert=False):
        self.log, self.alert = log, alert

    def label(self, text="", icon="NONE"):
        self.log.append((text, icon, self.alert))

    def __getattr__(self, name):
        return lambda *a, **k: _Drawn(self.log, self.alert)


def _panel_labels():
    log = []
    bpy.types.MOTIONMILL_PT_panel.draw(type("Panel", (), {"layout": _Drawn(log)})(), bpy.context)
    return log


def test_a_clips_notes_show_under_its_done_status(mixamo):
    """Foot cleanup's or the retarget's notes (a correction made or skipped) are read in the panel, not only in the
    action's custom properties."""
    from blender_addon import apply
    s, rt = bpy.context.scene.motionmill, bpy.context.window_manager.motionmill
    action = bpy.data.actions.new("a person crawls")
    action["motionmill_notes"] = "lifting the body 0.29 m: the feet would go through the floor"
    apply.add_history(bpy.context.scene, "a person crawls", "", action)
    rt.running, rt.failed, rt.done, rt.status = False, False, True, "done: 1 clip"
    text = " ".join(t for t, _, _ in _panel_labels())
    assert "lifting the body 0.29 m" in text.replace("  ", " ")
    rt.done, rt.status = False, ""


def test_an_unexpected_retarget_error_is_one_line_and_the_clip_stays_listed(backend, mixamo, monkeypatch, capsys):
    """As with a real rig whose retarget crashed: no traceback for the animator, one red line naming what failed,
    the traceback on the console and in the log, no check mark, and the clip kept in Clips for Apply to Rig."""
    from blender_addon import failures, rig
    s = bpy.context.scene.motionmill
    s.prompt, s.auto_length, s.seconds, s.seed = "a person waves", False, 2.0, 5
    n = len(s.history)

    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(rig, "solve", boom)
    with pytest.raises(RuntimeError) as raised:
        bpy.ops.motionmill.generate()
    rt = bpy.context.window_manager.motionmill
    log = failures.log_path()
    assert rt.status == f"retargeting failed: RuntimeError: boom (details in {log})"
    assert str(raised.value).strip() == f"Error: {rt.status}"      # Blender's report: the same one line
    assert rt.failed and not rt.done and not rt.running and rt.progress == 0.0
    drawn = [(text, icon) for text, icon, alert in _panel_labels() if alert]
    assert drawn and drawn[0][1] == "ERROR"      # in red, the status wrapped to the sidebar's width
    assert "".join(t for t, _ in drawn).replace(" ", "") == rt.status.replace(" ", "")
    assert not any(icon == "CHECKMARK" for _, icon, _ in _panel_labels())
    with open(log, encoding="utf-8") as f:
        logged = f.read()
    assert "MotionMill: retargeting failed" in logged and "Traceback (most recent call last)" in logged
    assert 'raise RuntimeError("boom")' in logged and "RuntimeError: boom" in logged
    assert 'raise RuntimeError("boom")' in capsys.readouterr().err       # the system console
    # the clip stays in Clips, and Apply to Rig puts it on the rig once the cause is gone
    assert len(s.history) == n + 1 and s.history_index == n
    h = s.history[n]
    assert h.pending and h.action is None and h.prompt == "a person waves" and h.seed == 5 and os.path.isfile(h.path)
    monkeypatch.undo()
    assert bpy.ops.motionmill.history_apply(index=n) == {"FINISHED"}
    action = mixamo.animation_data.action
    assert len(s.history) == n + 1 and h.action == action and not h.pending and action["motionmill_path"] == h.path
    _check_pose(mixamo, formats.load_any(h.path), 24.0, 1, [0, 20])
    # the next run starts clean and ends with the check mark
    assert bpy.ops.motionmill.generate() == {"FINISHED"}
    assert rt.done and not rt.failed and rt.status == "done: 1 clip"
    assert len(s.history) == n + 2 and s.history[-1].action == mixamo.animation_data.action
    assert not any(h.pending for h in s.history)
    assert ("done: 1 clip", "CHECKMARK", False) in _panel_labels()


def _skin(name, obj, bones, per_bone=6):
    """A mesh deformed by armature `obj`: vertices along each named bone (world rest pose), each in its bone's vertex
    group, and an Armature modifier."""
    mw = obj.matrix_world
    verts, groups = [], []
    for b in bones:
        bone = obj.data.bones[b]
        head, tail = mw @ bone.head_local, mw @ bone.tail_local
        for t in np.linspace(0.0, 1.0, per_bone):
            verts.append(tuple(head.lerp(tail, float(t))))
            groups.append(b)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], [])
    m = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(m)
    for b in bones:
        m.vertex_groups.new(name=b)
    for i, b in enumerate(groups):
        m.vertex_groups[b].add([i], 1.0, "REPLACE")
    m.modifiers.new("Armature", "ARMATURE").object = obj
    return m


def test_generate_onto_a_character_deforming_two_meshes(backend, mixamo):
    """A real character deforms several meshes (body, boots, ...) that share bones: Generate keys the mapped bones."""
    from blender_addon import rig
    names = [b.name for b in mixamo.data.bones]
    _skin("Body", mixamo, names)
    _skin("Boots", mixamo, [n for n in names if n.endswith(("Leg", "Foot", "ToeBase"))])
    skel = rig.skeleton_from_object(mixamo)
    feet = [skel.names.index(f"mixamorig:{s}Foot") for s in ("Left", "Right")]
    assert all(len(skel.mesh_points[i]) == 12 for i in feet)    # both meshes' vertices on the shared bones
    s = bpy.context.scene.motionmill
    s.prompt, s.auto_length, s.seconds, s.cleanup_feet = "a person walks forward", False, 2.0, True
    assert bpy.ops.motionmill.generate() == {"FINISHED"}
    action = mixamo.animation_data.action
    assert action is not None and action["motionmill_prompt"] == "a person walks forward"
    from blender_addon import compat
    keyed = {fc.data_path for fc in compat.all_fcurves(action) if len(fc.keyframe_points) > 1}
    mapped = set(rig.mapping_for(mixamo).roles.values())
    assert len(mapped) >= 20
    for bone in mapped:
        assert f'pose.bones["{bone}"].rotation_quaternion' in keyed, bone
    assert 'pose.bones["mixamorig:Hips"].location' in keyed


# ------------------------------------------------------------------------------------------ headless batch

@pytest.fixture
def rotated_blend(tmp_path):
    """A Mixamo rig (rotated, scaled 0.01, rolled bones) moved and turned, in a 25 fps scene starting at frame 10."""
    rigs.clear_scene()
    obj = rigs.mixamo_rig()
    from mathutils import Euler, Vector
    obj.location = Vector((2.0, -1.0, 0.5))
    obj.rotation_euler = Euler((1.5708, 0.0, 0.7))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 25, 1.0, 10
    path = tmp_path / "in.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    return path


def test_batch_motion_files(rotated_blend, tmp_path):
    files = [shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh"),
             shared_path("data", "motion272", "amass_000000_motion.npz")]
    before = rotated_blend.read_bytes()
    out = tmp_path / "out.blend"
    r = run_batch(["--blend", rotated_blend, "--rig", "Mixamo", "--motion", files[0], "--motion", files[1], "--out", out])
    assert r.returncode == 0, r.stderr
    assert rotated_blend.read_bytes() == before
    bpy.ops.wm.open_mainfile(filepath=str(out))
    obj = bpy.data.objects["Mixamo"]
    strips = list(obj.animation_data.nla_tracks["MotionMill"].strips)
    assert len(strips) == 2 and strips[0].frame_start == 10 and strips[1].frame_start == strips[0].frame_end + 1
    for st, f in zip(strips, files):
        m = formats.load_any(str(f))
        assert st.frame_end - st.frame_start == int(round((m.num_frames - 1) * 25 / m.fps))
    # the evaluated pose (NLA) is retarget's for the object as placed
    _check_pose(obj, formats.load_any(str(files[1])), 25.0, int(strips[1].frame_start), [0, 30])


@pytest.mark.parametrize("source", ["--prompt", "--prompts"])
def test_batch_prompts_with_backend(rotated_blend, tmp_path, source):
    model = shared_path("conformance", "motionmillion-tiny", "model")
    out = tmp_path / "out.blend"
    if source == "--prompt":
        prompts = ["--prompt", "a person waves", "--prompt", "a person bows"]
    else:
        (tmp_path / "prompts.txt").write_text("# the shot's prompts\na person waves\n\na person bows\n")
        prompts = ["--prompts", tmp_path / "prompts.txt"]
    r = run_batch(["--blend", rotated_blend, "--rig", "Mixamo", *prompts,
                   "--model-dir", model, "--device", "cpu", "--seconds", "2", "--cleanup-feet", "--python", PY,
                   "--out", out])
    assert r.returncode == 0, r.stderr
    bpy.ops.wm.open_mainfile(filepath=str(out))
    strips = list(bpy.data.objects["Mixamo"].animation_data.nla_tracks["MotionMill"].strips)
    assert [s.name for s in strips] == ["a person waves", "a person bows"] and strips[0].frame_start == 10


def test_batch_refuses_bad_arguments(rotated_blend, tmp_path):
    r = run_batch(["--blend", rotated_blend, "--rig", "Mixamo", "--motion", "x.npz", "--out", rotated_blend])
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    npz = shared_path("data", "motion272", "amass_000000_motion.npz")
    r = run_batch(["--blend", rotated_blend, "--rig", "Nope", "--motion", npz, "--out", tmp_path / "o.blend"])
    assert r.returncode == 1 and "no such object" in r.stderr and "Mixamo" in r.stderr
    r = run_batch(["--blend", rotated_blend, "--rig", "Mixamo", "--prompt", "walk", "--model-dir", tmp_path / "none",
                "--out", tmp_path / "o.blend"])
    assert r.returncode == 1 and "model directory not found" in r.stderr
    assert not (tmp_path / "o.blend").exists()
    # without --model-dir: the default model folder, as `python -m backend generate` finds it, named in the error
    r = run_batch(["--blend", rotated_blend, "--rig", "Mixamo", "--prompt", "walk", "--out", tmp_path / "o.blend"])
    default = os.path.join(os.environ["MOTIONMILL_DATA"], "models", "motionmillion-7b")
    assert r.returncode == 1 and f"model directory not found: {default}" in r.stderr, r.stderr


def test_batch_faults_are_one_line_before_any_work(rotated_blend, tmp_path):
    """Issue 11: a text file as --blend, a folder or an unwritable --out, a rig that is not a humanoid."""
    npz = shared_path("data", "motion272", "amass_000000_motion.npz")
    text = tmp_path / "notes.blend"
    text.write_text("not a blend file\n")
    unwritable = "/proc/motionmill-out.blend"        # not writable even by root
    cases = [(["--blend", text, "--out", tmp_path / "o.blend"], "not a .blend file"),
             (["--blend", rotated_blend, "--out", tmp_path], "is a folder"),
             (["--blend", rotated_blend, "--out", unwritable], "cannot write there")]
    for args, says in cases:
        r = run_batch(args + ["--rig", "Mixamo", "--motion", npz])
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert [line for line in r.stderr.splitlines() if line.startswith("error: ")] == \
            [line for line in r.stderr.splitlines() if says in line], (says, r.stderr)
    rigs.clear_scene()
    rigs.build_armature("Snake", [("a", None, (0, 0, 0), (0, 0, 0.3)), ("b", "a", (0, 0, 0.3), (0, 0, 0.6)),
                                  ("c", "b", (0, 0, 0.6), (0, 0, 0.9))])
    snake = tmp_path / "snake.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(snake), copy=True)
    # a backend Python that does not exist: had it tried to generate first, that would be the error
    r = run_batch(["--blend", snake, "--rig", "Snake", "--prompt", "a person waves", "--python", tmp_path / "no-python",
                   "--model-dir", shared_path("conformance", "motionmillion-tiny", "model"), "--out", tmp_path / "o.blend"])
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--rig Snake" in r.stderr and "no-python" not in r.stderr, r.stderr
    assert not (tmp_path / "o.blend").exists()


# ------------------------------------------------------------------------------------------ packaging

def test_package_zips_install_and_use_the_bundled_retarget(tmp_path):
    import subprocess
    import zipfile
    from blender_addon import package
    legacy, ext = package.build(str(tmp_path / "dist"))
    with zipfile.ZipFile(ext) as z:
        names = z.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "retarget/transfer.py" in names
    assert "bench_keying.py" not in names
    # The running bpy's own extension validator (bpy/<4.5|5.0>/scripts/addons_core/...): it is always there,
    # so a missing one is a failure, not a silent skip.
    validator = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py")
    assert os.path.exists(validator), validator
    r = subprocess.run([sys.executable, validator, "validate", ext], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    with zipfile.ZipFile(legacy) as z:
        z.extractall(tmp_path / "addons")
    code = ("import sys, bpy, addon_utils; sys.path.insert(0, sys.argv[1]); m = addon_utils.enable('motionmill');"
            "assert m._rt._name == 'motionmill.retarget' and 'retarget' not in sys.modules;"
            "assert bpy.ops.motionmill.add_smpl_armature() == {'FINISHED'}; addon_utils.disable('motionmill');"
            "assert not hasattr(bpy.types.Scene, 'motionmill'); print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "addons")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip().endswith("ok"), r.stderr


# ------------------------------------------------------------------------------- preferences and history

def test_doctor_button_shows_the_backend_report(backend, tmp_path):
    from blender_addon.doctor_view import doctor_report, doctor_rows
    runtime = bpy.context.window_manager.motionmill
    assert bpy.ops.motionmill.doctor() == {"FINISHED"}
    report = doctor_report(runtime.doctor_output)
    assert report["model"]["complete"] is True and not runtime.doctor_running
    rows = dict(doctor_rows(report))
    assert rows["Model"] == "ready (checkpoints opened and checked)" and rows["transformers"]
    mm_props.Prefs.overrides = {**mm_props.Prefs.overrides, "model_dir": str(tmp_path / "nowhere")}
    with pytest.raises(RuntimeError, match="doctor: not ready: model directory not found"):
        bpy.ops.motionmill.doctor()
    rows = dict(doctor_rows(doctor_report(runtime.doctor_output)))
    assert rows["Model"] == "NOT READY" and "model directory not found" in rows["Problem"]


def test_restart_backend_starts_a_fresh_service(backend, mixamo):
    assert bpy.ops.motionmill.restart_backend() == {"FINISHED"}
    first = mm_session.SESSION.client.pid
    assert bpy.ops.motionmill.restart_backend() == {"FINISHED"}
    assert mm_session.SESSION.alive and mm_session.SESSION.client.pid != first
    assert bpy.context.window_manager.motionmill.status == "backend restarted"


def test_history_apply_preview_delete(mixamo):
    s = bpy.context.scene.motionmill
    path = str(shared_path("data", "motion272", "amass_000000_motion.npz"))
    start = len(s.history)
    assert bpy.ops.motionmill.import_motion(filepath=path, placement="INSERT") == {"FINISHED"}
    first = mixamo.animation_data.action
    assert len(s.history) == start + 1 and s.history[-1].action == first
    # re-apply the clip from the history: a new action, the first one kept
    assert bpy.ops.motionmill.history_apply(index=start) == {"FINISHED"}
    second = mixamo.animation_data.action
    assert second != first and first.name in bpy.data.actions and len(s.history) == start + 2
    # preview makes the entry's action active again
    assert bpy.ops.motionmill.history_preview(index=start) == {"FINISHED"}
    assert mixamo.animation_data.action == first and second.use_fake_user
    # delete removes the entry only; the action stays
    assert bpy.ops.motionmill.history_delete(index=start) == {"FINISHED"}
    assert len(s.history) == start + 1 and first.name in bpy.data.actions
    bpy.data.actions.remove(second)
    with pytest.raises(RuntimeError, match="action no longer exists"):
        bpy.ops.motionmill.history_preview(index=start)


def test_process_exits_cleanly_after_register_unregister():
    """A process that registered the add-on exits with status 0 (bpy 4.2 segfaulted at exit with the target's poll
    callback registered, props._TARGET_POLL); on 4.5+ the armature picker keeps its poll."""
    import subprocess
    code = ("import bpy, blender_addon as a; from blender_addon import props; a.register(); a.unregister(); "
            "print(bool(props._TARGET_POLL))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip().splitlines()[-1] == str(bpy.app.version >= (4, 5, 0))


def test_a_clip_row_shows_its_whole_prompt_on_hover():
    """The Clips list shows a prompt's start; its row's tooltip (the select operator's description) is all of it."""
    s = bpy.context.scene.motionmill
    s.history.clear()
    for prompt in ("a person walks", "a zombie shuffles forward, then lunges at the camera with both arms raised"):
        s.history.add().prompt = prompt
    op = bpy.types.MOTIONMILL_OT_clip_select
    props = type("Props", (), {"index": 1})()
    assert op.description(bpy.context, props) == s.history[1].prompt
    assert bpy.ops.motionmill.clip_select(index=1) == {"FINISHED"} and s.history_index == 1
    s.history.clear()

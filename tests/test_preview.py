"""--preview of the headless batch in real bpy: a Workbench playblast to an animated GIF (and MP4 when FFMPEG is built in)."""
import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import rigs  # noqa: E402  (tests/rigs.py)
from conftest import run_batch, shared_path  # noqa: E402
from gifread import read_gif  # noqa: E402

from blender_addon import preview  # noqa: E402


@pytest.fixture
def rig_blend(tmp_path):
    rigs.clear_scene()
    rigs.mixamo_rig()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 25, 1.0, 10
    path = tmp_path / "in.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    return path


def _names():
    return {c: sorted(x.name for x in getattr(bpy.data, c)) for c in
            ("objects", "meshes", "materials", "cameras", "worlds", "images")}


def test_gif_encoder_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (37, 53, 3), dtype=np.uint8) * 64 + 32    # 64 colours: exact after the palette
    b = a.copy()
    b[5:9, 10:20] = 255 - b[5:9, 10:20]
    p = tmp_path / "t.gif"
    preview.write_gif(p, [a, b, b], 4)
    frames, delays, loops = read_gif(p)
    assert loops and delays == [4, 4, 4] and len(frames) == 3
    for got, want in zip(frames, [a, b, b]):
        np.testing.assert_array_equal(got, (want >> 3) * 8 + 4)
    big = rng.integers(0, 6, (200, 300, 3), dtype=np.uint8) * 40      # 216 colours, noise: many LZW table resets
    preview.write_gif(p, [big], 10)
    np.testing.assert_array_equal(read_gif(p)[0][0], (big >> 3) * 8 + 4)


def test_batch_preview_gif(rig_blend, tmp_path):
    motion = shared_path("data", "motion272", "amass_000000_motion.npz")
    out, gif = tmp_path / "out.blend", tmp_path / "p.gif"
    r = run_batch(["--blend", rig_blend, "--rig", "Mixamo", "--motion", motion, "--preview", gif, "--out", out])
    assert r.returncode == 0, r.stderr
    raw = gif.read_bytes()
    assert raw[:6] == b"GIF89a"
    frames, delays, loops = read_gif(gif)
    assert loops and 20 <= len(frames) <= preview.GIF_MAX_FRAMES and raw.count(b"\x00\x2C") >= len(frames)
    assert frames[0].shape == (360, 480, 3) and all(d >= 2 for d in delays)
    diffs = [np.abs(f.astype(int) - frames[0]).sum(-1) > 30 for f in frames[1:]]
    assert max(d.sum() for d in diffs) > 500            # the figure moves
    # the figure (orange) is in frame at the start and at the end
    for f in (frames[0], frames[-1]):
        orange = f[..., 0].astype(int) > f[..., 2].astype(int) + 30
        assert orange.sum() > 150
        ys, xs = np.nonzero(orange)
        assert xs.min() > 0 and xs.max() < 479 and ys.min() > 0
    bpy.ops.wm.open_mainfile(filepath=str(out))
    assert not [n for ns in _names().values() for n in ns if n.startswith("MM_preview")]
    assert sorted(o.name for o in bpy.data.objects) == ["Mixamo"] and bpy.context.scene.camera is None
    assert bpy.context.scene.render.engine != "BLENDER_WORKBENCH"


def test_render_preview_restores_scene(rig_blend, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(rig_blend))
    scene = bpy.context.scene
    obj = bpy.data.objects["Mixamo"]
    obj.pose.bones["mixamorig:LeftArm"].rotation_mode = "XYZ"
    obj.pose.bones["mixamorig:LeftArm"].keyframe_insert("rotation_euler", frame=10)
    obj.pose.bones["mixamorig:LeftArm"].rotation_euler = (0, 0, 1.2)
    obj.pose.bones["mixamorig:LeftArm"].keyframe_insert("rotation_euler", frame=20)
    scene.frame_set(13)
    obj.select_set(True)
    before = _names()
    render = (scene.render.engine, scene.render.resolution_x, scene.render.filepath, scene.render.image_settings.file_format,
              scene.frame_start, scene.frame_end, scene.display.shading.light, scene.view_settings.view_transform)
    preview.render_preview(scene, obj, str(tmp_path / "s.gif"), 10, 20, resolution=(160, 120))
    assert len(read_gif(tmp_path / "s.gif")[0]) == 11
    assert _names() == before and scene.camera is None and scene.frame_current == 13 and obj.select_get()
    assert render == (scene.render.engine, scene.render.resolution_x, scene.render.filepath,
                      scene.render.image_settings.file_format, scene.frame_start, scene.frame_end,
                      scene.display.shading.light, scene.view_settings.view_transform)
    with pytest.raises(preview.PreviewError, match="unknown extension"):
        preview.render_preview(scene, obj, str(tmp_path / "s.avi"), 10, 20)


def test_batch_preview_mp4(rig_blend, tmp_path):
    if not getattr(bpy.app.build_options, "codec_ffmpeg", False):
        pytest.skip("this bpy has no FFMPEG output")
    motion = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    out, mp4 = tmp_path / "out.blend", tmp_path / "p.mp4"
    r = run_batch(["--blend", rig_blend, "--rig", "Mixamo", "--motion", motion, "--preview", mp4, "--out", out])
    assert r.returncode == 0, r.stderr
    raw = mp4.read_bytes()
    assert len(raw) > 1000 and raw[4:8] == b"ftyp"


def test_batch_preview_bad_extension(rig_blend, tmp_path):
    motion = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    r = run_batch(["--blend", rig_blend, "--rig", "Mixamo", "--motion", motion, "--preview", tmp_path / "p.webm",
                "--out", tmp_path / "out.blend"])
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "unknown extension" in r.stderr
    assert not (tmp_path / "out.blend").exists()

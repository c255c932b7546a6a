"""Makes the demo files in examples/ that the commands in README.md and docs/ use (tests/test_docs_commands.py runs
those commands from a fresh copy of the repository, so every file they name ships with it):

    examples/character.blend   one armature, "Mixamo": the tests' Mixamo-style rig (tests/rigs.py), as Blender's FBX
                               importer leaves a Mixamo character (object turned 90 deg about X, scale 0.01, bones in
                               cm, every bone with a roll of its own), nothing else in the file
    examples/markers.blend     the same rig, with three timeline markers named with prompts: "a person walks forward"
                               at frame 1, "a person turns around" at 49, "a person waves" at 97 (`--markers`)
    examples/walk.bvh          a real walk capture, a copy of tests/data/real/bvh/games105_walk60.bvh (GAMES-105,
                               BSD-3-Clause; its notice is in examples/README.md), 182 frames at 60 fps, its own skeleton
    examples/walk.npz          the same walk as a motion interchange file (SMPL-22, 30 fps): imported onto the rig by the
                               add-on's Import Motion and read back by the inverse retarget, as Continue reads an action

Run it from the repository root with a Python that has bpy, the oldest Blender the add-on supports so that every
supported Blender opens the files (a file saved by a newer Blender may not open in an older one):

    .venv-bpy42/bin/python examples/make_demo_files.py            # or: .venv/bin/python examples/make_demo_files.py
    .venv/bin/python examples/make_demo_files.py --out /tmp/demo  # somewhere else
"""
import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import bpy  # noqa: E402

import rigs  # noqa: E402  (tests/rigs.py)

MARKERS = [(1, "a person walks forward"), (49, "a person turns around"), (97, "a person waves")]
WALK = os.path.join(ROOT, "tests", "data", "real", "bvh", "games105_walk60.bvh")


def scene_with_rig():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    rigs.clear_scene()
    obj = rigs.mixamo_rig()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_start, scene.frame_end = 1, 120
    return obj


def save(path):
    bpy.context.preferences.filepaths.save_version = 0      # no .blend1 backup beside it
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=True)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "examples"), help="the folder to write (default: examples/)")
    a = ap.parse_args(argv)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)

    scene_with_rig()
    save(os.path.join(out, "character.blend"))

    scene_with_rig()
    for frame, prompt in MARKERS:
        bpy.context.scene.timeline_markers.new(prompt, frame=frame)
    save(os.path.join(out, "markers.blend"))

    dest = os.path.join(out, "walk.bvh")
    shutil.copyfile(WALK, dest)
    print(f"wrote {os.path.relpath(dest)} (a copy of {os.path.relpath(WALK, ROOT)})")

    import blender_addon
    from blender_addon import long
    from retarget import interchange
    obj = scene_with_rig()
    blender_addon.register()
    try:
        scene = bpy.context.scene
        scene.motionmill.target = obj
        result = bpy.ops.motionmill.import_motion(filepath=dest, placement="INSERT")
        if "FINISHED" not in result:
            raise SystemExit(f"importing {dest} failed: {result}")
        first, last = long.action_end(obj.animation_data.action)
        motion = long.motion_from_rig(scene, obj, range(first, last + 1))
        npz = os.path.join(out, "walk.npz")
        interchange.save_motion(npz, motion, prompt="a person walks forward (GAMES-105 walk60.bvh, BSD-3-Clause)")
        print(f"wrote {os.path.relpath(npz)} ({len(motion.rotations)} frames at {motion.fps:g} fps)")
    finally:
        blender_addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())

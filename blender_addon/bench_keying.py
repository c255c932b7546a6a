"""Keying benchmark (dev tool): `python -m blender_addon.bench_keying [--frames 300] [--bones 52] [--report docs/benchmarks.md]`

Keys a TargetAnimation of F frames x B bones (rotation on every bone, location on the hips) with the add-on's
foreach_set path and with a keyframe_insert loop, side by side in real bpy, and writes a "Keying" section.
"""
import argparse
import os
import platform
import time

import bpy
import numpy as np

from . import keying
from ._rt import transfer


def chain_rig(n):
    arm = bpy.data.armatures.new("Bench")
    obj = bpy.data.objects.new("Bench", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    prev = None
    for i in range(n):
        eb = arm.edit_bones.new(f"bone_{i:02d}")
        eb.head, eb.tail = (0, 0, 0.1 * i), (0, 0, 0.1 * i + 0.1)
        eb.parent = prev
        prev = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def random_anim(names, frames, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(frames, len(names), 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    loc = np.zeros((frames, len(names), 3))
    loc[:, 0] = rng.normal(size=(frames, 3))
    return transfer.TargetAnimation(tuple(names), q, loc, (names[0],), 30.0)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m blender_addon.bench_keying")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--bones", type=int, default=52)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--report", default=None, help="write a 'Keying' section into this markdown file")
    a = p.parse_args(argv)
    obj = chain_rig(a.bones)
    anim = random_anim([b.name for b in obj.pose.bones], a.frames)
    fast = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        action, _slot = keying.key_animation(obj, anim, "bench", 1)
        fast.append(time.perf_counter() - t)
    obj.animation_data.action = None
    t = time.perf_counter()
    keying.key_with_keyframe_insert(obj, anim, 1)
    slow = time.perf_counter() - t
    best = min(fast)
    curves = a.bones * 4 + 3
    lines = [f"`python -m blender_addon.bench_keying --frames {a.frames} --bones {a.bones}` (bpy {bpy.app.version_string}, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs):", "",
             "| method | time | keys |", "|---|---|---|",
             f"| foreach_set whole F-curves (add-on) | {best * 1000:.1f} ms (best of {a.repeat}) | {curves * a.frames} |",
             f"| keyframe_insert per bone per frame | {slow * 1000:.0f} ms | {curves * a.frames} |", "",
             f"Speed-up: {slow / best:.0f}x. Target: <= 0.5 s and >= 20x."]
    text = "\n".join(lines)
    print(text)
    if a.report:
        from motionmill_common.bench_report import update_section
        update_section(a.report, "Keying", text)
    return 0 if best <= 0.5 and slow / best >= 20 else 1


if __name__ == "__main__":
    raise SystemExit(main())

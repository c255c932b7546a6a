"""Retarget + foot-cleanup benchmark on real bpy rigs and real motions; writes its section of docs/benchmarks.md.

    .venv/bin/python tests/bench_retarget.py [--out docs/benchmarks.md]

Not a unit test (no asserts on speed): it measures and reports, including what misses the targets.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402

import bench_setup  # noqa: E402
import rigs  # noqa: E402
from motionmill_common.bench_report import update_section  # noqa: E402
from retarget import metrics  # noqa: E402
from retarget.bvh import read_bvh  # noqa: E402
from retarget.feet import cleanup_feet  # noqa: E402
from retarget.mapping import auto_map  # noqa: E402
from retarget.transfer import estimate_floor, foot_points, pose_world, retarget  # noqa: E402


def leg(H, r):
    return np.mean([np.linalg.norm(H[r[f"{s}_knee"]] - H[r[f"{s}_hip"]]) + np.linalg.norm(H[r[f"{s}_ankle"]] - H[r[f"{s}_knee"]]) for s in ("left", "right")])


def build(name, bvh_path):
    rigs.clear_scene()
    obj = rigs.bvh_rig(bvh_path) if name == "bvh" else rigs.RIGS[name]()
    return rigs.skeleton_from_object(obj)


def pelvis_rise(sk, mp, X, ss, sr, ps):
    """(target pelvis rise over its rest height, the source's scaled by the leg ratio), both (T,), metres."""
    tr = metrics.role_indices(sk, mp)
    k = leg(sk.world_heads, tr) / leg(ss.world_heads, sr)
    s_pts, s_rest_floor = foot_points(ss, sr, heads_only=True)
    s_floor = estimate_floor(np.min([ps[:, i, 2] - c for side in s_pts.values() for i, _, c in side], 0))
    rise_src = (ps[:, sr["pelvis"], 2] - s_floor) - (ss.world_heads[sr["pelvis"], 2] - s_rest_floor)
    return X[:, tr["pelvis"], 2] - sk.world_heads[tr["pelvis"], 2], k * rise_src


def variant_lines(amass):
    """Every test rig as importers deliver it, beside the original."""
    import tempfile
    folder = pathlib.Path(tempfile.mkdtemp())
    ss, sm, ps = metrics.source_world(amass)
    sr = metrics.role_indices(ss, sm)
    src_skate = metrics.rig_foot_skate(ss, sm, ps, amass.fps)
    lines = ["### Rigs as importers deliver them: AMASS clip, twist='drive'", "",
             "Each test rig as built, after a glTF round trip (Blender's exporter and importer; importer bone heuristic "
             "BLENDER, the default, TEMPERANCE, FORTUNE), an FBX round trip (io_scene_fbx, without and with automatic "
             "bone orientation) and with scrambled bone tails (random directions, 1 cm to 40 m, heads kept, rolls "
             "recomputed). Limb error as above, without / with foot cleanup; pelvis height: correlation with the source "
             "and the worst error of its rise over the rest height against the source's scaled by the leg ratio (cm), "
             "with cleanup (its pelvis lowering included); skate: the rig's foot skate over the source's, both per leg "
             "length, without / with cleanup; below floor: deepest foot point (ankle, ball, the foot's end) without / "
             "with cleanup. Legs p95 with cleanup: the same limb error over the six leg limbs alone (thighs, shins, "
             "feet), the ones cleanup changes.", "",
             "| rig | delivered as | mean (deg) | p95 (deg) | p95 with cleanup (deg) | legs p95 with cleanup (deg) | pelvis height corr. | worst pelvis height error (cm) | skate / source's | below floor (cm) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    legs = tuple((f"{s}_{a}", f"{s}_{b}") for s in ("left", "right") for a, b in (("hip", "knee"), ("knee", "ankle"), ("ankle", "foot")))
    for r in rigs.RIGS:
        for v in ("original",) + rigs.VARIANTS:
            sk = rigs.skeleton_from_object(rigs.variant(v, r, folder))
            mp = auto_map(sk)
            tr = metrics.role_indices(sk, mp)
            a = retarget(amass, sk, mp, twist="drive")
            b = cleanup_feet(a, sk, mp)
            R, X = pose_world(a, sk)
            Rb, Xb = pose_world(b, sk)
            e = metrics.limb_direction_error(ps, sr, X, tr)
            eb = metrics.limb_direction_error(ps, sr, Xb, tr)
            el = metrics.limb_direction_error(ps, sr, Xb, tr, legs)
            rt, rs = pelvis_rise(sk, mp, Xb, ss, sr, ps)
            corr = np.corrcoef(Xb[:, tr["pelvis"], 2], ps[:, sr["pelvis"], 2])[0, 1]
            k = leg(sk.world_heads, tr) / leg(ss.world_heads, sr)
            skate = metrics.rig_foot_skate(sk, mp, X, amass.fps) / k / src_skate
            skateb = metrics.rig_foot_skate(sk, mp, Xb, amass.fps) / k / src_skate
            pen = metrics.rig_ground_penetration(sk, mp, R, X)
            penb = metrics.rig_ground_penetration(sk, mp, Rb, Xb)
            lines.append(f"| {r} | {v} | {e.mean():.2f} | {np.percentile(e, 95):.2f} | {np.percentile(eb, 95):.2f} | "
                         f"{np.percentile(el, 95):.2f} | {corr:.3f} | {100 * np.abs(rt - rs).max():.2f} | {skate:.2f} / {skateb:.2f} | "
                         f"{100 * pen:.2f} / {100 * penb:.2f} |")
    rigs.clear_scene()
    return lines + ["", "Targets (issue 15): mean <= 1 deg, p95 <= 3 deg without cleanup and <= 5 deg with it, pelvis "
                    "height correlation >= 0.95, skate no worse than the source's, nothing more than 1 cm below the "
                    "floor: met on every rig and delivery with cleanup (tests/test_retarget_variants.py asserts them). "
                    "Without cleanup vrm and rigify skate more than the source (their feet are shaped unlike SMPL's, so "
                    "the 5 cm planted test catches other frames); cleanup brings them under it. Every delivered rig lands "
                    "as its original does (FBX adds '_end' leaf bones, so a toe that had no child gains a foot end "
                    "there). The legs alone come to about 4.5-5.2 deg p95 with cleanup: while heel and ball are both "
                    "planted the foot's heading is held at its mean, and this capture turns on planted feet (up to 28 "
                    "deg within one 2.7 s contact), which the skate measure counts as sliding.", ""]


def main():
    args, amass, predicts = bench_setup.start()
    names = ["mixamo", "ue5", "vrm", "daz_g8", "rigify", "bvh"]
    skels = {n: build(n, predicts[0]) for n in names}
    rigs.clear_scene()
    lines = ["Produced by `.venv/bin/python tests/bench_retarget.py` (real bpy 5.0.1 rigs, real motions, one CPU core).", ""]

    lines += ["### Faithful transfer: AMASS clip (1287 frames, 30 fps), twist='drive', root_motion='hips'", "",
              "Limb-direction error vs the source (FK on the neutral SMPL skeleton), each body in its own hips-and-neck "
              "frame, over 12 limbs (upper/fore arms, thighs, shins, feet, collars, neck->head). Pelvis: max ground-plane "
              "displacement error vs the source's scaled by the leg ratio, in % of the target's leg length. Feet: deepest "
              "foot point below the rig's floor.", "",
              "| rig | bones | mean error (deg) | p95 (deg) | max (deg) | pelvis error (% leg) | deepest below floor (cm) |",
              "|---|---|---|---|---|---|---|"]
    ss, sm, ps = metrics.source_world(amass)
    sr = metrics.role_indices(ss, sm)
    ok = {"dir": True, "pel": True, "pen": True}
    for n in names:
        sk = skels[n]
        mp = auto_map(sk)
        tr = metrics.role_indices(sk, mp)
        anim = retarget(amass, sk, mp, twist="drive")
        R, X = pose_world(anim, sk)
        e = metrics.limb_direction_error(ps, sr, X, tr)
        k = leg(sk.world_heads, tr) / leg(ss.world_heads, sr)
        F = lambda s, r: np.arctan2(*((s.world_heads[r["left_hip"]] - s.world_heads[r["right_hip"]])[[1, 0]]))
        a = F(sk, tr) - F(ss, sr)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pe = np.linalg.norm(metrics.planar_displacement(X, tr["pelvis"]) - k * metrics.planar_displacement(ps, sr["pelvis"]) @ rot.T, axis=-1).max() / leg(sk.world_heads, tr)
        pen = metrics.rig_ground_penetration(sk, mp, R, X)
        ok["dir"] &= e.mean() <= 3 and np.percentile(e, 95) <= 10
        ok["pel"] &= pe <= 0.10
        ok["pen"] &= pen <= 0.01
        lines.append(f"| {n} | {len(sk)} | {e.mean():.2f} | {np.percentile(e, 95):.2f} | {e.max():.2f} | {100 * pe:.2f} | {100 * pen:.2f} |")
    lines += ["", f"Targets: mean <= 3 deg and p95 <= 10 deg: {'met' if ok['dir'] else 'MISSED'}; pelvis within 10% of leg: "
              f"{'met' if ok['pel'] else 'MISSED'}; feet never more than 1 cm below the floor: {'met' if ok['pen'] else 'MISSED'}.", ""]

    lines += ["### Foot sliding on the MotionMillion generations", "",
              "Skate = mean ground speed (m/s) of foot points (ankle and ball) while within 5 cm of the floor (each point "
              "minus its rest clearance; floor = mean of the 25th-50th percentile of the lowest points, as the reference "
              "does) at both ends of the frame step. `bvh` is the rig Blender's BVH importer builds from the file, i.e. "
              "the same SMPL body as the reference's `*_remove_sliding.bvh`, which is measured the same way on its own "
              "skeleton (60 fps).", "",
              "| clip | rig | before | after | after/before | reference remove_sliding |", "|---|---|---|---|---|---|"]
    met30, metref = True, True
    for path in predicts:
        m = read_bvh(path)
        ref = read_bvh(path.replace("_predict", "_remove_sliding"))
        rs, rm, rp = metrics.source_world(ref)
        ref_skate = metrics.rig_foot_skate(rs, rm, rp, ref.fps)
        for n in ("bvh", "mixamo", "ue5", "vrm", "daz_g8"):
            sk = skels[n]
            mp = auto_map(sk)
            a = retarget(m, sk, mp)
            b = cleanup_feet(a, sk, mp)
            s0 = metrics.rig_foot_skate(sk, mp, pose_world(a, sk)[1], m.fps)
            s1 = metrics.rig_foot_skate(sk, mp, pose_world(b, sk)[1], m.fps)
            met30 &= s1 <= 0.3 * s0
            if n == "bvh":
                metref &= s1 <= ref_skate
            lines.append(f"| {pathlib.Path(path).stem} | {n} | {s0:.4f} | {s1:.4f} | {s1 / s0:.2f} | {ref_skate:.4f} |")
    lines += ["", f"Targets: after <= 30% of before on every clip and rig: {'met' if met30 else 'MISSED'}; "
              f"no worse than the reference (same body): {'met' if metref else 'MISSED'}.", ""]

    lines += variant_lines(amass)
    lines += ["### Throughput (one CPU core, vectorised numpy)", "",
              "| rig | bones | frames | retarget (frames/s) | cleanup (frames/s) | retarget + cleanup (frames/s) |", "|---|---|---|---|---|---|"]
    for n in ("mixamo", "ue5", "rigify"):
        sk = skels[n]
        mp = auto_map(sk)
        tr_t, cl_t = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            a = retarget(amass, sk, mp)
            t1 = time.perf_counter()
            cleanup_feet(a, sk, mp)
            t2 = time.perf_counter()
            tr_t.append(t1 - t0)
            cl_t.append(t2 - t1)
        T = amass.num_frames
        tr_b, cl_b = min(tr_t), min(cl_t)
        lines.append(f"| {n} | {len(sk)} | {T} | {T / tr_b:,.0f} | {T / cl_b:,.0f} | {T / (tr_b + cl_b):,.0f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", "Target: >= 5,000 frames/s for a 25-bone rig (mixamo row) for retarget + cleanup. Load average at the "
              f"end of the run: {load:.1f} on {os.cpu_count()} CPUs (other work on the machine slows every row alike).", ""]
    update_section(args.out, "Retargeting and foot cleanup", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The real-asset judge: characters and BVH files that others made (tests/data/real/, listed in its manifests and
SOURCES.md), put through MotionMill as a user runs it and measured as Blender evaluates the result.

- A character: imported with Blender's own importer (glTF for .glb and .vrm, FBX, or a .blend opened), saved as a
  .blend, then given the real AMASS capture by the headless batch (`python -m blender_addon.batch`, a real
  subprocess), without and with --cleanup-feet. The batch's OUT.blend is opened and the rig evaluated at every frame.
- A BVH file: onto a test rig by the headless batch, judged against Blender's own BVH import of the same file, whose
  joints play the roles written by hand in BVH_ROLES below (the judge does not trust the auto-map it is judging).

The limits (issue "Every character and every mocap file an animator really has"): limb mean <= 2 deg and p95 <= 6 deg
without cleanup, p95 <= 8 deg with it; neck -> head p95 <= 6 deg; pelvis height correlation >= 0.95; with foot
cleanup, skate no worse than the source's (per leg length; without it the retarget copies the source's sliding, and
the figure is reported, not judged); nothing more than 1 cm below the floor. An asset either meets them or is
refused by the product with one line, which the report lists.

`python tests/real_assets.py [--only NAME ...] [--report docs/retargeting.md]` prints one line per asset and, when
asked, writes the report card. tests/test_real_assets.py runs the same judge in the suite.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from retarget import metrics  # noqa: E402
from retarget.mapping import Mapping, expand_sides  # noqa: E402
from retarget.motion import Motion  # noqa: E402
from retarget.transfer import leg_length  # noqa: E402

LIMITS = {"limb_mean": 2.0, "limb_p95": 6.0, "limb_p95_cleanup": 8.0, "head_p95": 6.0, "pelvis_corr": 0.95,
          "below_floor": 0.01}
CAPTURE_SECONDS = 20.0   # the AMASS capture's first 20 s (600 frames at 30 fps): walking, turning, standing
BVH_RIG = "mixamo"       # tests/rigs.py's rig that the BVH files go onto


def _sided(**names):
    """{role: joint} from one name per limb word, '{Side}', '{S}' or '{s}' standing for the side (as in presets)."""
    roles = {(f"{{side}}_{word}" if "{" in name else word): [name] for word, name in names.items()}
    return {role: aliases[0] for role, aliases in expand_sides({"roles": roles})["roles"].items()}


# Which joint of each convention plays which role, for the judge's reference (Blender's own import of the file).
# Written by hand from the files' hierarchies: the judge must not take them from the auto-map it judges.
BVH_ROLES = {
    "cmu_3dsmax": _sided(pelvis="Hips", neck="lowerneck", head="Head", hip="{Side}Hip", knee="{Side}Knee",
                         ankle="{Side}Ankle", foot="{Side}Toe", collar="{Side}Collar", shoulder="{Side}Shoulder",
                         elbow="{Side}Elbow", wrist="{Side}Wrist"),
    "cmu_motionbuilder": _sided(pelvis="Hips", neck="Neck", head="Head", hip="{Side}UpLeg", knee="{Side}Leg",
                                ankle="{Side}Foot", foot="{Side}ToeBase", collar="{Side}Shoulder", shoulder="{Side}Arm",
                                elbow="{Side}ForeArm", wrist="{Side}Hand"),
    "lafan1": _sided(pelvis="Hips", neck="Neck", head="Head", hip="{Side}UpLeg", knee="{Side}Leg", ankle="{Side}Foot",
                     foot="{Side}ToeBase", collar="{Side}Shoulder", shoulder="{Side}Arm", elbow="{Side}ForeArm",
                     wrist="{Side}Hand"),
    "daz": _sided(pelvis="hip", neck="neck", head="head", hip="{s}Thigh", knee="{s}Shin", ankle="{s}Foot",
                  collar="{s}Collar", shoulder="{s}Shldr", elbow="{s}ForeArm", wrist="{s}Hand"),
    "bandai_namco": _sided(pelvis="Hips", neck="Neck", head="Head", hip="UpperLeg_{S}", knee="LowerLeg_{S}",
                           ankle="Foot_{S}", foot="Toes_{S}", collar="Shoulder_{S}", shoulder="UpperArm_{S}",
                           elbow="LowerArm_{S}", wrist="Hand_{S}"),
    # GAMES-105's head is an End Site of torso_head, which stands at the neck's base: it plays the neck here
    "games105": _sided(pelvis="RootJoint", neck="torso_head", hip="{s}Hip", knee="{s}Knee", ankle="{s}Ankle",
                       foot="{s}ToeJoint", collar="{s}Torso_Clavicle", shoulder="{s}Shoulder", elbow="{s}Elbow",
                       wrist="{s}Wrist"),
}
BVH_ROLES["second_life"] = BVH_ROLES["daz"]  # Second Life / QAvimator use Daz's Poser-era names (hip, lShldr, lThigh)
BVH_ROLES["cmu_daz"] = BVH_ROLES["daz"]


def manifest(kind):
    """The entries of tests/data/real/<kind>/manifest.json ('characters' or 'bvh'); [] when the corpus is absent."""
    p = REAL / kind / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else []


@dataclass
class Verdict:
    asset: str
    mode: str                      # 'plain' or 'cleanup' (characters), the rig's name (BVH)
    refused: str = ""              # the product's one-line refusal, when it refused
    figures: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures

    def line(self):
        if self.refused:
            return f"{self.asset:34s} {self.mode:8s} REFUSED  {self.refused}"
        f = self.figures
        text = (f"limb mean {f['limb_mean']:5.2f} p95 {f['limb_p95']:6.2f}  head p95 {f.get('head_p95', float('nan')):6.2f}  "
                f"pelvis corr {f['pelvis_corr']:.3f}  skate {f['skate']:.3f} (source {f['source_skate']:.3f}) /leg  "
                f"below floor {100 * f['below_floor']:.1f} cm")
        text += f"  worst limb {f['worst_limb']}"
        return f"{self.asset:34s} {self.mode:8s} {'ok  ' if self.ok else 'FAIL'}  {text}" + (
            f"  <- {'; '.join(self.failures)}" if self.failures else "")


# ------------------------------------------------------------------------------------------ evaluation in Blender

def _world_pose(bpy, obj, frames):
    """World rotations (T,B,3,3) (scale removed) and heads (T,B,3) of every bone, as Blender evaluates the rig."""
    import rigs
    names = [b.name for b in obj.data.bones]
    W = []
    for f in frames:
        bpy.context.scene.frame_set(int(f))
        W.append(rigs.read_world_pose(obj, names))
    W = np.array(W)
    R = W[..., :3, :3]
    return names, R / np.linalg.norm(R, axis=-2, keepdims=True), W[..., :3, 3]


def _hide_meshes(bpy):
    """Meshes are not judged, and deforming eight of them per frame only costs time."""
    for o in bpy.data.objects:
        if o.type == "MESH":
            o.hide_viewport = True


def _strip_frames(obj):
    track = obj.animation_data.nla_tracks["MotionMill"]
    st = track.strips[-1]
    return np.arange(int(round(st.frame_start)), int(round(st.frame_end)) + 1)


def judge_figures(src_pos, src_roles, src_leg, src_skate, skel, mapping, R, X, fps, src_head=None):
    """The figures for one result: limbs and head against the source, pelvis height, skate, floor. With `src_head`
    ((T,J,3,3) world rotations, (J,3,3) rest rotations and (J,3) rest joints of a source upright on its zero pose, whose head the retarget
    moves from its rest: transfer.role_alignments) the head is judged by how it turned from rest against the body
    (metrics.head_rotation_error), else by the neck -> head direction."""
    tr = metrics.role_indices(skel, mapping)
    n = min(len(src_pos), len(X))
    src_pos, R, X = src_pos[:n], R[:n], X[:n]
    # an arm without a hand bone (mapping.required_roles) is judged to its forearm's tail, where the wrist is
    for side in ("left", "right"):
        e = tr.get(f"{side}_elbow")
        if e is not None and f"{side}_wrist" not in tr:
            tail = X[:, e] + R[:, e, :, 1] * skel.lengths[e] * skel.object_scale
            tr[f"{side}_wrist"] = X.shape[1]
            X = np.concatenate([X, tail[:, None]], 1)
    limbs = [l for l in metrics.LIMBS if all(r in src_roles and r in tr for r in l)]
    err = metrics.limb_direction_error(src_pos, src_roles, X, tr, limbs)
    out = {"limb_mean": float(err.mean()), "limb_p95": float(np.percentile(err, 95)),
           "worst_limb": "-".join(limbs[int(np.argmax(err.mean(0)))])}
    if all(r in tr and r in src_roles for r in ("neck", "head")):
        if src_head is not None:
            src_rot, src_rest_rot, src_rest_pos = src_head
            head = metrics.head_rotation_error((src_rot[:n], src_roles, src_rest_rot, src_rest_pos),
                                               (R, tr, skel.world_rest_rotations, skel.world_heads))
        else:
            head = metrics.limb_direction_error(src_pos, src_roles, X, tr, (("neck", "head"),))
        out["head_p95"] = float(np.percentile(head, 95))
    leg = leg_length(skel.world_heads, tr)
    hs, ht = src_pos[:, src_roles["pelvis"], 2], X[:, tr["pelvis"], 2]
    if np.std(hs) < 1e-3 * src_leg:   # a source whose pelvis never moves up or down: the target's must not either
        out["pelvis_corr"] = 1.0 if np.std(ht) < 1e-3 * leg else 0.0
    else:
        out["pelvis_corr"] = float(np.corrcoef(hs, ht)[0, 1])
    out["skate"] = metrics.rig_foot_skate(skel, mapping, X, fps) / leg
    out["source_skate"] = src_skate / src_leg
    out["below_floor"] = metrics.rig_ground_penetration(skel, mapping, R, X)
    return out


def check(figures, cleanup):
    """The limits a result misses, as short phrases."""
    f, bad = figures, []
    if f["limb_mean"] > LIMITS["limb_mean"]:
        bad.append(f"limb mean {f['limb_mean']:.2f} > {LIMITS['limb_mean']}")
    p95 = LIMITS["limb_p95_cleanup" if cleanup else "limb_p95"]
    if f["limb_p95"] > p95:
        bad.append(f"limb p95 {f['limb_p95']:.2f} > {p95}")
    if f.get("head_p95", 0.0) > LIMITS["head_p95"]:
        bad.append(f"head p95 {f['head_p95']:.2f} > {LIMITS['head_p95']}")
    if not f["pelvis_corr"] >= LIMITS["pelvis_corr"]:
        bad.append(f"pelvis corr {f['pelvis_corr']:.3f} < {LIMITS['pelvis_corr']}")
    if cleanup and f["skate"] > f["source_skate"]:
        bad.append(f"skate {f['skate']:.3f} > source {f['source_skate']:.3f}")
    if f["below_floor"] > LIMITS["below_floor"]:
        bad.append(f"{100 * f['below_floor']:.1f} cm below the floor")
    return bad


def _batch(args, timeout=600):
    r = subprocess.run([sys.executable, "-m", "blender_addon.batch"] + [str(a) for a in args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("error:")]
    return r.returncode, (lines[-1][len("error: "):] if lines else r.stderr.strip()[-300:]), r.stdout


# --------------------------------------------------------------------------------------------------- characters

def capture(folder):
    """The real AMASS capture's first CAPTURE_SECONDS as an interchange .npz in `folder`, and its Motion."""
    from conftest import shared_path
    d = np.load(shared_path("data", "motion272", "amass_000000_motion.npz"))
    n = int(CAPTURE_SECONDS * float(d["fps"]))
    motion = Motion(d["rotations"][:n], d["translation"][:n], float(d["fps"]))
    path = pathlib.Path(folder) / "amass_000000_20s.npz"
    np.savez(path, rotations=motion.rotations, translation=motion.translation, fps=motion.fps)
    return path, motion


def import_character(bpy, entry, folder):
    """A fresh scene holding the character as Blender's importer reads it, saved as <folder>/<file>.blend."""
    src = REAL / "characters" / entry["file"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    kind = entry["kind"]
    if kind == "blend":
        bpy.ops.wm.open_mainfile(filepath=str(src), load_ui=False)
    elif kind in ("glb", "gltf", "vrm"):
        path = src
        if kind == "vrm":  # a VRM is a glTF binary; Blender's importer goes by the extension
            path = pathlib.Path(folder) / (src.stem + ".glb")
            shutil.copyfile(src, path)
        bpy.ops.import_scene.gltf(filepath=str(path))
    elif kind == "fbx":
        bpy.ops.import_scene.fbx(filepath=str(src))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0
    bpy.context.scene.frame_start = 1
    blend = pathlib.Path(folder) / (src.name + ".blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    return blend


def judge_character(bpy, entry, folder, capture_path, motion, modes=("plain", "cleanup")):
    """One Verdict per mode for a character of the manifest."""
    from blender_addon import rig
    blend = import_character(bpy, entry, folder)
    ss, sm, sp = metrics.source_world(motion)
    sr = metrics.role_indices(ss, sm)
    s_leg, s_skate = leg_length(ss.world_heads, sr), metrics.rig_foot_skate(ss, sm, sp, motion.fps)
    out = []
    for mode in modes:
        v = Verdict(entry["file"], mode)
        dest = pathlib.Path(folder) / f"{entry['file']}.{mode}.out.blend"
        args = ["--blend", blend, "--rig", entry["armature"], "--motion", capture_path, "--out", dest]
        rc, err, _ = _batch(args + (["--cleanup-feet"] if mode == "cleanup" else []))
        if rc != 0:
            v.refused = err
            out.append(v)
            continue
        bpy.ops.wm.open_mainfile(filepath=str(dest), load_ui=False)
        _hide_meshes(bpy)
        obj = bpy.data.objects[entry["armature"]]
        skel = rig.skeleton_from_object(obj)
        mapping = rig.mapping_for(obj, skel)
        names, R, X = _world_pose(bpy, obj, _strip_frames(obj))
        order = [names.index(n) for n in skel.names]
        v.figures = judge_figures(sp, sr, s_leg, s_skate, skel, mapping, R[:, order], X[:, order], motion.fps,
                                  src_head=(metrics.source_world_rotations(motion), ss.world_rest_rotations,
                                            ss.world_heads))
        v.failures = check(v.figures, mode == "cleanup")
        out.append(v)
    return out


# -------------------------------------------------------------------------------------------------------- BVH

def _for_blender(path, folder):
    """The file as Blender's importer can read it: QAvimator's key list after the frames makes that importer fail
    (it reads every line after 'Frame Time' as a frame), so a copy without it."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    k = next(i for i, l in enumerate(lines) if l.strip().lower().startswith("frames:"))
    n = int(float(lines[k].split(":")[1]))
    if len([l for l in lines[k + 2:] if l.strip()]) == n:
        return path
    copy = pathlib.Path(folder) / path.name
    copy.write_text("\n".join(lines[:k + 2 + n]) + "\n")
    return copy


def _bvh_source(bpy, entry, folder):
    """Blender's own import of the file: (joint positions (T,J,3) world z up, role -> joint index, the skeleton, joint
    rotations (T,J,3,3) world)."""
    import rigs
    bpy.ops.wm.read_factory_settings(use_empty=True)
    from retarget.bvh import guess_bvh_scale
    path = _for_blender(REAL / "bvh" / entry["file"], folder)
    scale = entry.get("scale") or guess_bvh_scale(path)   # metres per unit, as skate is judged
    bpy.ops.import_anim.bvh(filepath=str(path), global_scale=scale,
                            update_scene_fps=False, update_scene_duration=False)
    obj = bpy.context.object
    skel = rigs.skeleton_from_object(obj)
    names, R, X = _world_pose(bpy, obj, np.arange(1, entry["frames"] + 1))
    order = [names.index(n) for n in skel.names]
    roles = {r: skel.names.index(j) for r, j in bvh_roles(entry).items()}
    return X[:, order], roles, skel, R[:, order]


def bvh_roles(entry):
    """The hand-written roles of a manifest entry's convention (its "roles", else BVH_ROLES by its convention)."""
    if "roles" in entry:
        return entry["roles"]
    conv = entry["convention"]
    key = next((k for k in sorted(BVH_ROLES, key=len, reverse=True) if conv.startswith(k)), None)
    if key is None:
        raise KeyError(f"no hand-written roles for convention {conv!r}: add them to BVH_ROLES")
    return BVH_ROLES[key]


def judge_bvh(bpy, entry, folder, rig_name=BVH_RIG):
    """One Verdict: the file onto the test rig by the headless batch, against Blender's import of it."""
    import rigs
    from blender_addon import rig
    v = Verdict(entry["file"], rig_name)
    fps = float(entry["fps"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = rigs.RIGS[rig_name]()
    arm = obj.name
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = int(round(fps)), round(fps) / fps
    bpy.context.scene.frame_start = 1
    blend = pathlib.Path(folder) / f"{rig_name}_{entry['file']}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    dest = pathlib.Path(folder) / f"{rig_name}_{entry['file']}.out.blend"
    rc, err, _ = _batch(["--blend", blend, "--rig", arm, "--motion", REAL / "bvh" / entry["file"], "--out", dest])
    if rc != 0:
        v.refused = err
        return v
    src_pos, src_roles, src_skel, src_rot = _bvh_source(bpy, entry, folder)
    s_leg = leg_length(src_skel.world_heads, src_roles)
    s_skate = metrics.rig_foot_skate(src_skel, Mapping({r: src_skel.names[j] for r, j in src_roles.items()}), src_pos, fps)
    bpy.ops.wm.open_mainfile(filepath=str(dest), load_ui=False)
    obj = bpy.data.objects[arm]
    skel = rig.skeleton_from_object(obj)
    mapping = rig.mapping_for(obj, skel)
    names, R, X = _world_pose(bpy, obj, _strip_frames(obj))
    order = [names.index(n) for n in skel.names]
    # a file upright on its zero pose moves the rig's neck and head from their rest (transfer.role_alignments)
    from retarget.bvh import read_bvh
    upright = read_bvh(REAL / "bvh" / entry["file"]).rest_is_upright()
    v.figures = judge_figures(src_pos, src_roles, s_leg, s_skate, skel, mapping, R[:, order], X[:, order], fps,
                              src_head=(src_rot, src_skel.world_rest_rotations, src_skel.world_heads) if upright else None)
    v.failures = check(v.figures, cleanup=False)
    return v


# ------------------------------------------------------------------------------------------------------ report

def report_card(verdicts, path):
    """docs/retargeting.md's report card section, between its markers (the rest of the page is kept)."""
    path = pathlib.Path(path)
    rows = ["| asset | mode | limb mean ° | limb p95 ° | head p95 ° | pelvis height corr | skate / source (per leg) | below floor | verdict |",
            "|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        if v.refused:
            rows.append(f"| {v.asset} | {v.mode} | | | | | | | refused: {v.refused} |")
            continue
        f = v.figures
        rows.append(f"| {v.asset} | {v.mode} | {f['limb_mean']:.2f} | {f['limb_p95']:.2f} | "
                    f"{f.get('head_p95', float('nan')):.2f} | {f['pelvis_corr']:.3f} | {f['skate']:.3f} / {f['source_skate']:.3f} | "
                    f"{100 * f['below_floor']:.1f} cm | {'meets the limits' if v.ok else '; '.join(v.failures)} |")
    begin, end = "<!-- report card: begin -->", "<!-- report card: end -->"
    body = "\n".join([begin, "", _measured_on(), "", *rows, "", end])
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + body + "\n"
    path.write_text(text)


def _measured_on():
    """When, where and how the table was measured, for the report card."""
    import datetime
    import platform
    import bpy
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine()) \
        if os.path.exists("/proc/cpuinfo") else platform.machine()
    return (f"Measured {datetime.date.today()} on {cpu} ({os.cpu_count()} cores), bpy {bpy.app.version_string}, by "
            f"`.venv/bin/python tests/real_assets.py --report docs/retargeting.md` (characters: the AMASS capture's first "
            f"{CAPTURE_SECONDS:g} s through the headless batch; BVH files onto the {BVH_RIG}-style test rig).")


def run(only=(), report=None):
    import bpy
    verdicts = []
    with tempfile.TemporaryDirectory() as folder:
        capture_path, motion = capture(folder)
        for entry in manifest("characters"):
            if not only or entry["file"] in only:
                for v in judge_character(bpy, entry, folder, capture_path, motion):
                    print(v.line(), flush=True)
                    verdicts.append(v)
        for entry in manifest("bvh"):
            if not only or entry["file"] in only:
                v = judge_bvh(bpy, entry, folder)
                print(v.line(), flush=True)
                verdicts.append(v)
    if report:
        report_card(verdicts, report)
    return verdicts


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=(), help="asset file names to judge (default: all)")
    p.add_argument("--report", help="write the report card into this Markdown file (e.g. docs/retargeting.md)")
    a = p.parse_args()
    os.environ.setdefault("MOTIONMILL_DATA", tempfile.mkdtemp(prefix="motionmill-judge-"))
    bad = [v for v in run(a.only, a.report) if not v.ok and not v.refused]
    sys.exit(1 if bad else 0)

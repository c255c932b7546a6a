"""Key reduction: retarget.keyreduce's bounds in numpy, and what Blender itself evaluates from the keys it writes,
on the real AMASS clip retargeted onto the test rigs, against the exact bake at every frame."""
import numpy as np
import pytest

from retarget import keyreduce
from retarget.rotations import axis_angle_to_quaternion

ROT_DEG, LOC_M = 0.5, 0.001


def _smooth_noisy(T, C, seed):
    """A smooth motion with mocap-like jitter on top, (T, C)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 6, T)[:, None]
    return np.sin(t * rng.uniform(0.5, 3, C) + rng.uniform(0, 6, C)) + 0.002 * rng.normal(size=(T, C))


def test_location_curve_stays_within_the_bound_at_every_frame():
    bake = 0.3 * _smooth_noisy(400, 3, 0)
    g = keyreduce.reduce_group(bake, keyreduce.distance_error, LOC_M)
    fit = g.evaluate(400)
    assert np.linalg.norm(fit - bake, axis=-1).max() <= LOC_M
    assert g.frames[0] == 0 and g.frames[-1] == 399 and len(g.frames) < 400
    np.testing.assert_array_equal(g.values, bake[g.frames])       # keys sit on the bake


def test_a_still_channel_gets_one_key():
    bake = np.tile([0.1, 0.2, 0.3], (50, 1)) + 1e-5 * np.random.default_rng(1).normal(size=(50, 3))
    g = keyreduce.reduce_group(bake, keyreduce.distance_error, LOC_M)
    assert len(g.frames) == 1 and np.linalg.norm(g.evaluate(50) - bake, axis=-1).max() <= LOC_M


def test_orientations_down_a_chain_stay_within_the_bound():
    """Four bones in a chain: each channel and each bone's orientation in the armature within 0.5 deg."""
    T, B = 300, 4
    q = axis_angle_to_quaternion(0.6 * _smooth_noisy(T, 3 * B, 2).reshape(T, B, 3))
    rest = np.stack([np.eye(3)] * B)
    groups = keyreduce.reduce_animation(q, np.zeros((T, B, 3)), [False] * B, [-1, 0, 1, 2], rest, ROT_DEG, LOC_M)
    fit = np.stack([g.evaluate(T) for g, _ in groups], 1)
    world_bake, world_fit = q[:, 0], fit[:, 0]
    for b in range(B):
        assert keyreduce.rotation_error_deg(fit[:, b], q[:, b]).max() <= ROT_DEG
        if b:
            world_bake = keyreduce.quaternion_multiply(world_bake, q[:, b])
            world_fit = keyreduce.quaternion_multiply(world_fit / np.linalg.norm(world_fit, axis=-1, keepdims=True),
                                                      fit[:, b])
        assert keyreduce.rotation_error_deg(world_fit, world_bake).max() <= ROT_DEG
    assert sum(len(g.frames) for g, _ in groups) < B * T / 3


def test_handles_are_aligned_a_third_of_each_segment_out():
    g = keyreduce.reduce_group(_smooth_noisy(200, 2, 3), keyreduce.distance_error, 0.01)
    left, right = g.handles()
    gaps = np.diff(g.frames)
    third = np.repeat(gaps[:, None] / 3, 2, 1)
    np.testing.assert_allclose(right[:-1, :, 0], third)
    np.testing.assert_allclose(-left[1:, :, 0], third)
    slope_l = (g.values - left[..., 1]) / -left[..., 0]
    slope_r = (right[..., 1] - g.values) / right[..., 0]
    np.testing.assert_allclose(slope_l, slope_r)                   # collinear through the key: 'ALIGNED' holds


# ------------------------------------------------------------------------------------------------- real bpy

def _evaluated(action, anim, start):
    """(quaternions, locations) as Blender evaluates the action's F-curves at every frame of the clip."""
    from blender_addon import compat
    T = anim.num_frames
    Q, L = anim.quaternions.copy() * 0, anim.locations.copy()
    for fc in compat.all_fcurves(action):
        b = anim.bone_names.index(fc.data_path.split('"')[1])
        values = np.array([fc.evaluate(start + t) for t in range(T)])
        (Q if fc.data_path.endswith("rotation_quaternion") else L)[:, b, fc.array_index] = values
    return Q, L


def _keys(action):
    from blender_addon import compat
    return sum(len(fc.keyframe_points) for fc in compat.all_fcurves(action))


@pytest.mark.bpy
@pytest.mark.parametrize("rig", ["mixamo", "ue5"])
def test_blender_evaluates_reduced_keys_within_the_bounds(rig):
    """The whole AMASS clip: at least 3x fewer keys; every channel Blender evaluates within 0.5 deg / 1 mm of the
    bake; every joint within 1 cm and every bone's world orientation within 1 deg of the bake's. The worst error the
    action records is what Blender evaluates."""
    pytest.importorskip("bpy")
    import rigs
    from blender_addon import keying
    from conftest import shared_path
    from retarget.formats import load_any
    from retarget.mapping import auto_map
    from retarget.transfer import TargetAnimation, pose_world, retarget

    rigs.clear_scene()
    obj = rigs.RIGS[rig]()                     # mixamo: object scaled 0.01 and turned, bones in cm
    skel = rigs.skeleton_from_object(obj)
    anim = retarget(load_any(str(shared_path("data", "motion272", "amass_000000_motion.npz"))), skel, auto_map(skel))
    start = 5
    full, _ = keying.key_animation(obj, anim, "full", start, assign=False)
    reduced, _ = keying.key_animation(obj, anim, "reduced", start, assign=False, reduce_keys=True)
    assert _keys(full) >= 3 * _keys(reduced)
    assert tuple(reduced.frame_range) == tuple(full.frame_range)

    from blender_addon import compat
    points = [k for fc in compat.all_fcurves(reduced) for k in fc.keyframe_points]
    kinds = {(k.interpolation, k.handle_left_type, k.handle_right_type) for k in points}
    assert kinds == {("BEZIER", "ALIGNED", "ALIGNED")}

    Q, L = _evaluated(reduced, anim, start)
    rot = max(keyreduce.rotation_error_deg(Q[:, b], anim.quaternions[:, b]).max() for b in range(len(anim.bone_names)))
    loc = np.linalg.norm(L - anim.locations, axis=-1).max() * skel.object_scale
    assert rot <= ROT_DEG and loc <= LOC_M
    assert abs(reduced["motionmill_key_error_deg"] - rot) < 1e-3 and abs(reduced["motionmill_key_error_m"] - loc) < 1e-5
    assert reduced["motionmill_keys"] == _keys(reduced) and full["motionmill_keys"] == _keys(full)

    R0, X0 = pose_world(anim, skel)
    Q = Q / np.linalg.norm(Q, axis=-1, keepdims=True)
    R1, X1 = pose_world(TargetAnimation(anim.bone_names, Q, L, anim.translated, anim.fps), skel)
    assert np.linalg.norm(X1 - X0, axis=-1).max() <= 0.01
    A = np.einsum("...ji,...jk->...ik", R0, R1)         # angle by atan2: arccos(trace) is ill-conditioned here
    skew = np.stack([A[..., 2, 1] - A[..., 1, 2], A[..., 0, 2] - A[..., 2, 0], A[..., 1, 0] - A[..., 0, 1]], -1)
    angle = np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1) / 2, (np.trace(A, axis1=-2, axis2=-1) - 1) / 2))
    assert angle.max() <= 1.0


@pytest.mark.bpy
def test_coarser_key_details_keep_their_stated_bounds_with_fewer_keys():
    """Reduce keys' Coarse (2 deg / 2 cm) and Loose (4 deg / 3 cm): every channel Blender evaluates within the stated
    bound of the bake, with fewer keys than Fine, and fewer again."""
    pytest.importorskip("bpy")
    import rigs
    from blender_addon import keying
    from conftest import shared_path
    from retarget.formats import load_any
    from retarget.mapping import auto_map
    from retarget.transfer import retarget

    rigs.clear_scene()
    obj = rigs.RIGS["mixamo"]()
    skel = rigs.skeleton_from_object(obj)
    anim = retarget(load_any(str(shared_path("data", "motion272", "amass_000000_motion.npz"))), skel, auto_map(skel))
    counts = []
    for detail in ("fine", "coarse", "loose"):
        deg, metres = keying.KEY_DETAIL[detail]
        action, _ = keying.key_animation(obj, anim, detail, 1, assign=False, reduce_keys=True, rotation_deg=deg,
                                         location_m=metres)
        Q, L = _evaluated(action, anim, 1)
        rot = max(keyreduce.rotation_error_deg(Q[:, b], anim.quaternions[:, b]).max() for b in range(len(anim.bone_names)))
        loc = np.linalg.norm(L - anim.locations, axis=-1).max() * skel.object_scale
        print(f"{detail}: {_keys(action)} keys, within {rot:.2f} deg and {100 * loc:.2f} cm")
        assert rot <= deg and loc <= metres, (detail, rot, loc)
        counts.append(_keys(action))
    assert counts[0] > counts[1] > counts[2]


@pytest.mark.bpy
def test_batch_keeps_the_exact_bake_unless_asked_and_the_panel_reduces(tmp_path):
    bpy = pytest.importorskip("bpy")
    import rigs
    from conftest import run_batch, shared_path

    rigs.clear_scene()
    rigs.mixamo_rig()
    blend = tmp_path / "in.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    bvh = shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh")
    counts = {}
    for flag in ((), ("--reduce-keys",), ("--reduce-keys", "--key-detail", "loose")):
        out = tmp_path / f"out{len(flag)}.blend"
        r = run_batch(["--blend", blend, "--rig", "Mixamo", "--motion", bvh, *flag, "--out", out])
        assert r.returncode == 0, r.stderr
        assert (" deg and " in r.stdout) == bool(flag) and " keys" in r.stdout     # each strip's count and error
        bpy.ops.wm.open_mainfile(filepath=str(out))
        strip = bpy.data.objects["Mixamo"].animation_data.nla_tracks["MotionMill"].strips[0]
        frames = int(strip.frame_end - strip.frame_start) + 1
        counts[flag] = _keys(strip.action)
        from blender_addon import compat
        curves = compat.all_fcurves(strip.action)
        if not flag:                                  # a key on every frame of every channel, as pipelines expect
            assert all(len(fc.keyframe_points) == frames for fc in curves)
            assert {k.interpolation for fc in curves for k in fc.keyframe_points} == {"LINEAR"}
        else:
            assert strip.action["motionmill_reduced_keys"]
    assert counts[("--reduce-keys",)] * 2 < counts[()]
    assert counts[("--reduce-keys", "--key-detail", "loose")] < counts[("--reduce-keys",)]

    import blender_addon
    blender_addon.register()
    try:                                              # the panel's option is on for a new scene
        assert bpy.context.scene.motionmill.reduce_keys is True
    finally:
        blender_addon.unregister()

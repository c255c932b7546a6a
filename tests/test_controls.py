"""retarget/controls.py: the numpy maths that turn a deform pose into control poses and pose channels."""
import numpy as np

from retarget import controls
from retarget.rotations import axis_angle_to_matrix, quaternion_to_matrix

RNG = np.random.default_rng(20)


def _rigid(n=()):
    M = np.zeros(n + (4, 4))
    M[..., :3, :3] = axis_angle_to_matrix(RNG.normal(size=n + (3,)))
    M[..., :3, 3] = RNG.normal(size=n + (3,))
    M[..., 3, 3] = 1.0
    return M


def _basis(q, loc):
    B = np.zeros(q.shape[:-1] + (4, 4))
    B[..., :3, :3], B[..., :3, 3], B[..., 3, 3] = quaternion_to_matrix(q), loc, 1.0
    return B


def test_local_channels_invert_blenders_parenting_with_and_without_local_location():
    T = 7
    rest, parent_rest, parent_final, basis = _rigid(), _rigid(), _rigid((T,)), _rigid((T,))
    offset = parent_final @ np.linalg.inv(parent_rest) @ rest
    final = offset @ basis                                       # Local Location on: pose = offset @ basis
    q, loc = controls.local_channels(final, rest, parent_final, parent_rest)
    assert np.allclose(_basis(q, loc), basis, atol=1e-9)
    assert (np.sum(q[1:] * q[:-1], -1) >= 0).all()              # sign-continuous
    # Local Location off: the location moves the bone along its parent's posed axes
    loc_off = RNG.normal(size=(T, 3))
    final_off = offset @ _basis(controls.local_channels(final, rest, parent_final, parent_rest)[0], np.zeros((T, 3)))
    final_off[:, :3, 3] += np.einsum("tij,tj->ti", parent_final[:, :3, :3], loc_off)
    q2, loc2 = controls.local_channels(final_off, rest, parent_final, parent_rest, local_location=False)
    assert np.allclose(loc2, loc_off, atol=1e-9) and np.allclose(np.abs(np.sum(q2 * q, -1)), 1.0)
    # a bone without parent, Local Location off: along the armature's axes
    q3, loc3 = controls.local_channels(final_off, rest, local_location=False)
    assert np.allclose(loc3, final_off[:, :3, 3] - rest[:3, 3], atol=1e-9)


def test_follow_carries_a_control_as_it_sits_on_its_deform_bone_at_rest():
    rest_d, rest_c, pose = _rigid(), _rigid(), _rigid((3,))
    placed = controls.follow(pose, rest_d, rest_c)
    assert np.allclose(controls.follow(rest_d, rest_d, rest_c), rest_c)
    assert np.allclose(np.linalg.inv(pose) @ placed, np.linalg.inv(rest_d) @ rest_c)


def test_pole_lies_in_the_bend_plane_on_the_side_the_knee_bends_to():
    T = 5
    top = RNG.normal(size=(T, 3))
    down = np.array([0, 0, -0.45])
    bend = np.array([0, -0.1, 0]) * np.arange(1, T + 1)[:, None]    # knees forward by 10..50 cm
    mid = top + down + bend
    end = mid + down - bend
    rigid = top + np.array([0.3, 0.2, 0])                           # the carried pole: off to the side
    pole = controls.pole_positions(top, mid, end, rigid, 0.6)
    n = np.cross(mid - top, end - top)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    # in the plane, but for the carried side's small share (it takes over only as the leg straightens)
    length = np.linalg.norm(mid - top, axis=-1) + np.linalg.norm(end - mid, axis=-1)
    share = 0.002 * length / np.linalg.norm(bend, axis=-1)
    assert (np.abs(np.sum((pole - top) * n, -1)) <= 0.6 * share + 1e-9).all()
    assert np.allclose(np.linalg.norm(pole - mid, axis=-1), 0.6)
    assert (np.sum((pole - mid) * bend, -1) > 0).all()                          # on the knee's side
    straight = controls.pole_positions(top, top + down, top + 2 * down, rigid, 0.6)
    side = np.array([0.3, 0.2, 0]) / np.linalg.norm([0.3, 0.2, 0])
    assert np.allclose(straight - (top + down), 0.6 * side)                     # a straight leg: the carried side


def test_ground_root_follows_the_pelvis_over_the_ground_and_the_hips_heading():
    rest_root = np.eye(4)
    pelvis0, l0, r0 = np.array([0, 0, 1.0]), np.array([0.1, 0, 0.95]), np.array([-0.1, 0, 0.95])
    yaw = np.radians(30)
    R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    shift = np.array([2.0, -1.0, 0.2])
    root = controls.ground_root((R @ pelvis0 + shift)[None], (R @ l0 + shift)[None], (R @ r0 + shift)[None],
                                rest_root, pelvis0, l0, r0)[0]
    assert np.allclose(root[:3, :3], R)
    assert np.allclose(root @ np.append(pelvis0, 1.0), np.append(R @ pelvis0 + shift * [1, 1, 0], 1.0))
    assert np.isclose(root[2, 3], 0.0)                                          # stays on the ground
    assert np.allclose(controls.ground_root(pelvis0[None], l0[None], r0[None], rest_root, pelvis0, l0, r0)[0], rest_root)


def test_limbs_use_ik_by_mode():
    leg, arm = {"kind": "leg"}, {"kind": "arm"}
    assert [controls.limb_uses_ik(leg, m) for m in controls.MODES] == [False, True, True]
    assert [controls.limb_uses_ik(arm, m) for m in controls.MODES] == [False, False, True]


def test_armature_pose_is_the_pose_world_without_the_object():
    from retarget.skeleton import Skeleton
    from retarget.transfer import TargetAnimation, pose_world
    B, T = 5, 4
    rest = np.stack([_rigid() for _ in range(B)])
    obj = _rigid()
    obj[:3, :3] *= 0.01                                          # an armature object scaled 0.01
    skel = Skeleton([f"b{i}" for i in range(B)], [-1, 0, 1, 1, 3], rest, np.ones(B), obj)
    q = RNG.normal(size=(T, B, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    anim = TargetAnimation(skel.names, q, RNG.normal(size=(T, B, 3)), ("b0",), 30.0)
    R, X = pose_world(anim, skel)
    A = controls.armature_pose(anim, skel, ["b4", "b2"])
    for n in ("b4", "b2"):
        b = skel.index(n)
        world = obj @ A[n]
        assert np.allclose(world[:, :3, 3], X[:, b]) and np.allclose(skel.object_rotation @ A[n][:, :3, :3], R[:, b])

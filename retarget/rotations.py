"""Rotation conversions in numpy, one small function per conversion.

Conventions (all functions broadcast over leading dimensions):
- matrices act on column vectors: v_world = R @ v_local; composition parent @ child;
- quaternions are (w, x, y, z), unit, the same rotation as the matrix;
- axis-angle is a 3-vector, direction = axis, norm = angle in radians;
- "6D" is the MotionMillion / 272-format form: the first two ROWS of the matrix, (r00 r01 r02 r10 r11 r12).
  Zhou et al.'s column form would give the inverse rotation.
"""
import numpy as np

_EPS = 1e-12


def normalize(v, axis=-1):
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.maximum(n, _EPS)


def rotation_6d_to_matrix(d6):
    """(...,6) rows form -> (...,3,3), Gram–Schmidt on rows."""
    d6 = np.asarray(d6, dtype=np.float64)
    a1, a2 = d6[..., :3], d6[..., 3:6]
    b1 = normalize(a1)
    b2 = normalize(a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


def matrix_to_rotation_6d(m):
    """(...,3,3) -> (...,6): the first two rows."""
    m = np.asarray(m)
    return m[..., :2, :].reshape(m.shape[:-2] + (6,))


def axis_angle_to_matrix(aa):
    """Rodrigues' formula."""
    aa = np.asarray(aa, dtype=np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    k = aa / np.maximum(theta, _EPS)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(k.shape[:-1] + (3, 3))
    th = theta[..., None]
    return np.eye(3) + np.sin(th) * K + (1.0 - np.cos(th)) * (K @ K)


def matrix_to_quaternion(m):
    """(...,3,3) -> (...,4) wxyz with w >= 0, numerically stable branch per element."""
    m = np.asarray(m, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], 1 - m00 + m11 - m22, m[..., 2, 1] + m[..., 1, 2]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], 1 - m00 - m11 + m22], -1),
    ], -2)
    best = np.argmax(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1), -1)
    q = np.take_along_axis(candidates, best[..., None, None], -2)[..., 0, :]
    q = normalize(q)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def quaternion_to_matrix(q):
    q = normalize(np.asarray(q, dtype=np.float64))
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def quaternion_to_axis_angle(q):
    q = normalize(np.asarray(q, dtype=np.float64))
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    return q[..., 1:] * np.where(s > _EPS, angle / np.maximum(s, _EPS), 2.0)


def matrix_to_axis_angle(m):
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def axis_angle_to_quaternion(aa):
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    scale = np.where(angle > _EPS, np.sin(half) / np.maximum(angle, _EPS), 0.5)
    return np.concatenate([np.cos(half), aa * scale], -1)


_AXES = {"X": 0, "Y": 1, "Z": 2}


def _axis_rotation(axis, angle):
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    if axis == "X":
        flat = (one, zero, zero, zero, c, -s, zero, s, c)
    elif axis == "Y":
        flat = (c, zero, s, zero, one, zero, -s, zero, c)
    else:
        flat = (c, -s, zero, s, c, zero, zero, zero, one)
    return np.stack(flat, -1).reshape(angle.shape + (3, 3))


def euler_to_matrix(angles, order):
    """Intrinsic Euler angles in radians, `order` like "ZYX": R = R_Z(a0) @ R_Y(a1) @ R_X(a2) (BVH channel order)."""
    angles = np.asarray(angles, dtype=np.float64)
    R = _axis_rotation(order[0], angles[..., 0])
    for i in (1, 2):
        R = R @ _axis_rotation(order[i], angles[..., i])
    return R


def matrix_to_euler(m, order):
    """Inverse of euler_to_matrix for any Tait–Bryan order (all three axes different)."""
    m = np.asarray(m, dtype=np.float64)
    i, j, k = (_AXES[a] for a in order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # even permutation of XYZ
    sy = np.clip(sign * m[..., i, k], -1.0, 1.0)
    a1 = np.arcsin(sy)
    a0 = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    a2 = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    gimbal = np.abs(sy) > 1 - 1e-9
    # At gimbal lock put all of the free angle on a0.
    a0 = np.where(gimbal, np.arctan2(sign * m[..., k, j], m[..., j, j]), a0)
    a2 = np.where(gimbal, 0.0, a2)
    return np.stack([a0, a1, a2], -1)


def quaternion_slerp(q0, q1, t):
    """Shortest-path spherical interpolation, t broadcast against the leading dims."""
    q0, q1 = normalize(np.asarray(q0, np.float64)), normalize(np.asarray(q1, np.float64))
    t = np.asarray(t, np.float64)[..., None]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(near, 1.0, sin_theta))
    w1 = np.where(near, t, np.sin(t * theta) / np.where(near, 1.0, sin_theta))
    return normalize(w0 * q0 + w1 * q1)


def rotation_between(a, b):
    """The smallest rotation matrix turning direction a onto direction b."""
    a, b = normalize(np.asarray(a, np.float64)), normalize(np.asarray(b, np.float64))
    v = np.cross(a, b)
    c = np.sum(a * b, -1)
    s = np.linalg.norm(v, axis=-1)
    # Opposite vectors: turn by pi about any axis perpendicular to a.
    helper = np.where(np.abs(a[..., :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    perp = normalize(np.cross(a, helper))
    axis = np.where((s < 1e-9)[..., None] & (c < 0)[..., None], perp, v / np.maximum(s, _EPS)[..., None])
    angle = np.arctan2(s, c)
    return axis_angle_to_matrix(axis * angle[..., None])

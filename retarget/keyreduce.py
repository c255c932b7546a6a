"""Key reduction: the fewest Bezier keys that keep every channel within a tolerance of a per-frame bake.

Conventions. A channel group is the (T, C) values of one bone's rotation quaternion (C = 4, wxyz) or location
(C = 3), sampled at frames 0..T-1. All C curves of a group share their key frames, so a bone is keyed (and edited)
as one. Between two keys at frames a < b each curve is the cubic Hermite segment fixed by the two key values and the
two key slopes (value per frame); as a Blender Bezier segment that is handles at a + (b - a)/3 and b - (b - a)/3 in
frame, which makes frame linear in the Bezier parameter, so Blender evaluates exactly this cubic. Both handles of a
key share its slope: the curve is C1, so the keys can carry 'ALIGNED' handles.

The bound is checked at every frame of the bake on what the curves give, not per component: for a rotation the angle
between the normalised curve quaternion (Blender normalises it before use) and the baked one; for a location the
distance. Keys are added greedily (at the worst frame of every segment that breaks the bound, slopes refitted by
least squares after each round) until no frame breaks it. A key on every frame reproduces the bake exactly, so this
always ends.
"""
from dataclasses import dataclass

import numpy as np

# Fit to a hair under the bound: Blender stores keys and handles as float32 and evaluates in float32.
FIT_MARGIN = 0.98
# Pulls each key's slope gently toward the bake's own slope there: it decides slopes that no frame constrains (a key
# next to keys on both sides) and keeps handles tame for editing. In frames squared, against sum(basis**2) >= 1/16
# for any segment with a frame inside it.
SLOPE_PRIOR = 1e-3


@dataclass
class KeyedGroup:
    frames: np.ndarray   # (K,) int frame indices into the bake, increasing, first and last frame included when K > 1
    values: np.ndarray   # (K, C) the bake's values at those frames
    slopes: np.ndarray   # (K, C) value per frame at each key (both handles)

    def evaluate(self, T):
        """(T, C) the curves at frames 0..T-1 (constant outside the keys, as Blender extrapolates)."""
        return hermite(self.frames, self.values, self.slopes, np.arange(T, dtype=np.float64))

    def handles(self):
        """(left, right) handle points per key, each (K, C, 2) as (frame offset from the key, value)."""
        f = self.frames.astype(np.float64)
        dl = np.diff(f, prepend=f[0] - 1.0)[:, None] / 3.0    # outer handles get one frame: never evaluated
        dr = np.diff(f, append=f[-1] + 1.0)[:, None] / 3.0
        left = np.stack([np.broadcast_to(-dl, self.values.shape), self.values - dl * self.slopes], -1)
        right = np.stack([np.broadcast_to(dr, self.values.shape), self.values + dr * self.slopes], -1)
        return left, right


def hermite(frames, values, slopes, x):
    """(N, C) the C1 cubic through (frames, values) with `slopes`, at frames x (N,)."""
    if len(frames) == 1:
        return np.broadcast_to(values[0], (len(x), values.shape[1])).copy()
    f = frames.astype(np.float64)
    x = np.clip(x, f[0], f[-1])
    j = np.clip(np.searchsorted(f, x, side="right") - 1, 0, len(f) - 2)   # segment of each x
    dx = (f[j + 1] - f[j])[:, None]
    u = ((x - f[j]) / dx[:, 0])[:, None]
    h00, h01, h10, h11 = _basis(u)
    return h00 * values[j] + h01 * values[j + 1] + dx * (h10 * slopes[j] + h11 * slopes[j + 1])


def _basis(u):
    u2, u3 = u * u, u * u * u
    return 2 * u3 - 3 * u2 + 1, -2 * u3 + 3 * u2, u3 - 2 * u2 + u, u3 - u2


def fit_slopes(bake, frames):
    """(K, C) least-squares key slopes for keys at `frames` through the bake (T, C) at those frames."""
    T, C = bake.shape
    K = len(frames)
    f = frames.astype(np.float64)
    prior = np.gradient(bake, axis=0)[frames] if T > 1 else np.zeros((K, C))
    x = np.arange(T, dtype=np.float64)
    j = np.clip(np.searchsorted(f, x, side="right") - 1, 0, K - 2)
    dx = f[j + 1] - f[j]
    u = (x - f[j]) / dx
    h00, h01, h10, h11 = _basis(u)
    a, b = dx * h10, dx * h11                       # (T,) how the slopes at the segment's two ends move frame x
    rest = bake - h00[:, None] * bake[frames][j] - h01[:, None] * bake[frames][j + 1]   # (T, C) what slopes must fit
    N = np.zeros((K, K))
    np.add.at(N, (j, j), a * a)
    np.add.at(N, (j + 1, j + 1), b * b)
    np.add.at(N, (j, j + 1), a * b)
    np.add.at(N, (j + 1, j), a * b)
    rhs = np.zeros((K, C))
    np.add.at(rhs, j, a[:, None] * rest)
    np.add.at(rhs, j + 1, b[:, None] * rest)
    N[np.diag_indices(K)] += SLOPE_PRIOR
    return np.linalg.solve(N, rhs + SLOPE_PRIOR * prior)


def rotation_error_deg(fit, bake):
    """(T,) angle in degrees between the rotations of quaternions `fit` (any length, normalised here) and `bake`."""
    q = fit / np.linalg.norm(fit, axis=-1, keepdims=True)
    b = bake / np.linalg.norm(bake, axis=-1, keepdims=True)
    q = np.where((np.sum(q * b, -1) < 0)[:, None], -q, q)
    # the 4-D chord: precise at small angles, where arccos of the dot product is not
    return np.degrees(4.0 * np.arcsin(np.minimum(1.0, np.linalg.norm(q - b, axis=-1) / 2.0)))


def distance_error(fit, bake):
    return np.linalg.norm(fit - bake, axis=-1)


def reduce_group(bake, error, tolerance):
    """KeyedGroup for the (T, C) bake within `tolerance` of error(fit, bake) -> (T,) at every frame."""
    bake = np.asarray(bake, np.float64)
    T = bake.shape[0]
    limit = tolerance * FIT_MARGIN
    first = np.array([0])
    if T == 1 or error(np.broadcast_to(bake[0], bake.shape), bake).max() <= limit:
        return KeyedGroup(first, bake[first], np.zeros((1, bake.shape[1])))
    frames = np.array([0, T - 1])
    while True:
        slopes = fit_slopes(bake, frames)
        err = error(hermite(frames, bake[frames], slopes, np.arange(T, dtype=np.float64)), bake)
        worst = _worst_per_segment(frames, err, limit)
        if not len(worst):
            return KeyedGroup(frames, bake[frames], slopes)
        frames = np.union1d(frames, worst)


def _worst_per_segment(frames, err, limit):
    """The frame of largest error in every segment whose error passes `limit`."""
    seg = np.searchsorted(frames, np.arange(len(err)), side="right") - 1
    bad = err > limit
    if not bad.any():
        return np.array([], dtype=int)
    out = []
    for s in np.unique(seg[bad]):
        idx = np.flatnonzero(seg == s)
        out.append(idx[np.argmax(err[idx])])
    return np.array(out)


def quaternion_multiply(a, b):
    """(..., 4) Hamilton products a * b, wxyz."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def reduce_animation(quaternions, locations, translated, parents, rest_rotations, rotation_deg=0.5, location=0.001):
    """Per bone: (rotation KeyedGroup, location KeyedGroup or None) for a TargetAnimation's channels.

    quaternions (T, B, 4) and locations (T, B, 3) as keyed, bones parents first; `translated` (B,) bools, whose bones'
    locations are keyed; `location` in the locations' own units (the rig's: metres / the armature object's scale);
    `parents` (B,) and `rest_rotations` (B, 3, 3), the rotation part of each bone.matrix_local.

    Each bone's rotation channel stays within `rotation_deg` of the bake, and so does its orientation in the armature
    (its parents' fitted curves composed with its own): per-channel errors alone could add up along a chain, and the
    animator sees the hand, not the channel."""
    from .rotations import matrix_to_quaternion
    q = np.asarray(quaternions, np.float64)
    T, B = q.shape[:2]
    rest_q = matrix_to_quaternion(np.asarray(rest_rotations, np.float64))     # (B, 4) bone in armature, at rest
    baked_world = np.empty((T, B, 4))                                          # bone orientations in the armature
    fitted_world = np.empty((T, B, 4))
    out = []
    for b in range(B):
        p = parents[b]
        if p >= b:
            raise ValueError("reduce_animation needs bones ordered parents first")
        rel = rest_q[b] if p < 0 else quaternion_multiply(rest_q[p] * [1, -1, -1, -1], rest_q[b])
        base_bake = rel if p < 0 else quaternion_multiply(baked_world[:, p], rel)
        base_fit = rel if p < 0 else quaternion_multiply(fitted_world[:, p], rel)
        baked_world[:, b] = quaternion_multiply(base_bake, q[:, b])

        def error(fit, bake, base_fit=base_fit, world=baked_world[:, b]):
            fit = fit / np.linalg.norm(fit, axis=-1, keepdims=True)
            return np.maximum(rotation_error_deg(fit, bake),
                              rotation_error_deg(quaternion_multiply(base_fit, fit), world))
        rot = reduce_group(q[:, b], error, rotation_deg)
        fit = rot.evaluate(T)
        fitted_world[:, b] = quaternion_multiply(base_fit, fit / np.linalg.norm(fit, axis=-1, keepdims=True))
        loc = reduce_group(locations[:, b], distance_error, location) if translated[b] else None
        out.append((rot, loc))
    return out

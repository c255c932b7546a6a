"""A skeletal motion: local joint rotations, root position and frame rate, on a named skeleton."""
from dataclasses import dataclass, field, replace

import numpy as np

from . import smpl
from .rotations import matrix_to_quaternion, quaternion_slerp, quaternion_to_matrix


class MotionError(ValueError):
    """A motion that cannot be used; the message is one actionable line."""


@dataclass
class Motion:
    rotations: np.ndarray          # (T, J, 3, 3) local rotations; the root's includes the heading
    translation: np.ndarray        # (T, 3) root joint position in metres, y up
    fps: float
    joint_names: tuple = smpl.JOINT_NAMES
    parents: tuple = smpl.PARENTS
    offsets: np.ndarray = field(default_factory=lambda: smpl.REST_OFFSETS.copy())  # (J, 3) parent-relative rest offsets, metres

    def __post_init__(self):
        self.rotations = np.asarray(self.rotations, np.float64)
        self.translation = np.asarray(self.translation, np.float64)
        self.offsets = np.asarray(self.offsets, np.float64)
        self.validate()

    def validate(self):
        R, t = self.rotations, self.translation
        if R.ndim != 4 or R.shape[2:] != (3, 3):
            raise MotionError(f"rotations must have shape (frames, joints, 3, 3), got {R.shape}")
        if R.shape[0] == 0:
            raise MotionError("the motion is empty: it has no frames")
        if t.shape != (R.shape[0], 3):
            raise MotionError(f"translation must have shape ({R.shape[0]}, 3), got {t.shape}")
        if len(self.joint_names) != R.shape[1] or len(self.parents) != R.shape[1] or self.offsets.shape != (R.shape[1], 3):
            raise MotionError(f"skeleton has {len(self.joint_names)} names, {len(self.parents)} parents and "
                              f"{self.offsets.shape[0]} offsets, but rotations have {R.shape[1]} joints")
        if not (np.isfinite(R).all() and np.isfinite(t).all()):
            bad = np.flatnonzero(~(np.isfinite(R).all(axis=(1, 2, 3)) & np.isfinite(t).all(axis=1)))
            raise MotionError(f"the motion has NaN or infinite values at frame {int(bad[0])} ({len(bad)} frames in all)")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MotionError(f"fps must be a positive number, got {self.fps}")

    @property
    def num_frames(self):
        return self.rotations.shape[0]

    @property
    def duration(self):
        return self.num_frames / self.fps

    def joint_index(self, name):
        return self.joint_names.index(name)

    def resample(self, fps):
        """The same motion at another frame rate, keeping real-time speed: slerp for rotations, lerp for the root."""
        if fps == self.fps:
            return replace(self)
        n_out = max(1, int(round((self.num_frames - 1) * fps / self.fps)) + 1)
        src_t = np.arange(n_out) * (self.fps / fps)
        src_t = np.minimum(src_t, self.num_frames - 1)
        i0 = np.floor(src_t).astype(int)
        i1 = np.minimum(i0 + 1, self.num_frames - 1)
        w = src_t - i0
        q = matrix_to_quaternion(self.rotations)
        qi = quaternion_slerp(q[i0], q[i1], np.broadcast_to(w[:, None], (n_out, q.shape[1])))
        trans = self.translation[i0] * (1 - w)[:, None] + self.translation[i1] * w[:, None]
        return replace(self, rotations=quaternion_to_matrix(qi), translation=trans, fps=float(fps))

    def rested_at(self, frame=0):
        """The same joint positions on a rest pose taken from `frame`: every joint's rest offset is its bone as posed
        there and its rotations are deltas from that pose (identity at `frame`). For skeletons whose zero pose is no
        body pose (Bandai-Namco's bones all along X with the joint orients baked into the rotations)."""
        g_rot, _ = smpl.forward_kinematics(self.rotations, self.translation, self.offsets, self.parents)
        ref = g_rot[frame]                                           # (J,3,3) world rotations at `frame`
        offsets = self.offsets.copy()
        world = g_rot @ np.swapaxes(ref, -1, -2)                     # (T,J,3,3) deltas from the pose at `frame`
        local = world.copy()
        for j, p in enumerate(self.parents):
            if p >= 0:
                offsets[j] = ref[p] @ self.offsets[j]
                local[:, j] = np.swapaxes(world[:, p], -1, -2) @ world[:, j]
        return replace(self, rotations=local, offsets=offsets)

    def rest_is_upright(self):
        """Whether the zero pose stands like a body (y up): its vertical extent at least half its widest horizontal
        one (a T-pose is about as wide as it is tall). A skeleton whose bones all lie along one axis is not."""
        heads = np.zeros((len(self.parents), 3))
        for j, p in enumerate(self.parents):
            heads[j] = self.offsets[j] + (heads[p] if p >= 0 else 0.0)
        extent = np.ptp(heads, axis=0)
        return bool(extent[1] >= 0.5 * max(extent[0], extent[2]))

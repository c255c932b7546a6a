"""A target rig's skeleton as plain arrays: names, parents, rest matrices, object transform.

Public API
----------
``Skeleton(names, parents, rest, lengths=None, object_matrix=None)``
    names:   B bone names;  parents: B parent indices (-1 for a root), parents before children.
    rest:    (B, 4, 4) rest matrices in ARMATURE space, exactly Blender's ``bone.matrix_local``:
             columns are the bone's x, y (along the bone, head -> tail) and z axes, translation = head.
    lengths: (B,) bone lengths in armature units (``bone.length``); default: distance to the first child.
    object_matrix: (4, 4) the armature object's ``matrix_world`` (rotation, uniform scale, translation),
             default identity. A Mixamo FBX import is rotation 90 deg about X, scale 0.01, bones in cm.
    mesh_points: {bone index: (N,3)} world rest positions (metres) of deforming-mesh vertices weighted mostly to
             that bone (the add-on keeps the lowest few); used only to find the foot's end on a rig without toes.
    moving:  the bone indices that move geometry of their own (weighted vertices, or a mesh parented to the bone),
             or None where that is not known (a motion's skeleton).

Bone tails (``lengths``, ``world_tails``) are kept for drawing only: importers invent them (glTF has none), so
nothing that places the body reads them.
``Skeleton.from_motion(motion)``
    The skeleton a ``Motion`` is defined on (rest = identity rotations at its offsets, y up), placed in
    Blender's z-up world by the same 90 deg X rotation Blender's FBX/BVH importers use.
``SkeletonError``
    Raised, with a one-line message, for a skeleton that cannot be used.

Everything world-space (``world_rest_rotations``, ``world_heads``, ``world_tails``) is in metres of the
Blender world frame (z up). No bpy here: the add-on and the tests read armatures into these arrays.
"""
import numpy as np

from .rotations import normalize


class SkeletonError(ValueError):
    """A skeleton (or its bone mapping) that cannot be used; the message is one actionable line."""


_YUP_TO_ZUP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # 90 deg about X


class Skeleton:
    def __init__(self, names, parents, rest, lengths=None, object_matrix=None, mesh_points=None, moving=None):
        self.names = tuple(str(n) for n in names)
        self.parents = tuple(int(p) for p in parents)
        self.rest = np.asarray(rest, np.float64)
        B = len(self.names)
        if B == 0:
            raise SkeletonError("the armature has no bones")
        if len(self.parents) != B or self.rest.shape != (B, 4, 4):
            raise SkeletonError(f"skeleton has {B} names, {len(self.parents)} parents and rest matrices of shape {self.rest.shape}")
        if len(set(self.names)) != B:
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise SkeletonError(f"bone names must be unique; repeated: {dup}")
        for i, p in enumerate(self.parents):
            if not -1 <= p < i:
                raise SkeletonError(f"bone {self.names[i]!r}: parent index {p} must come before it (list bones parents-first)")
        if not np.isfinite(self.rest).all():
            raise SkeletonError("rest matrices contain NaN or infinite values")
        R = self.rest[:, :3, :3]
        if np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max() > 1e-4:
            raise SkeletonError("rest matrices must be rotations plus translation (Blender bone.matrix_local)")
        self.object_matrix = np.eye(4) if object_matrix is None else np.asarray(object_matrix, np.float64)
        M = self.object_matrix[:3, :3]
        det = np.linalg.det(M)
        if not det > 0:
            raise SkeletonError("the armature object's transform is mirrored or degenerate (negative or zero scale)")
        self.object_scale = float(np.cbrt(det))
        self.object_rotation = M / self.object_scale
        if np.abs(self.object_rotation @ self.object_rotation.T - np.eye(3)).max() > 1e-3:
            raise SkeletonError("the armature object has non-uniform scale; apply scale (Ctrl+A) first")
        self.children = [[] for _ in range(B)]
        for i, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(i)
        heads = self.rest[:, :3, 3]
        if lengths is None:
            lengths = np.empty(B)
            for i in range(B):
                c = self.children[i]
                lengths[i] = np.linalg.norm(heads[c[0]] - heads[i]) if c else 0.0
            positive = lengths[lengths > 1e-9]
            lengths[lengths <= 1e-9] = 0.5 * np.median(positive) if len(positive) else 1.0
        self.lengths = np.asarray(lengths, np.float64)
        self.mesh_points = {int(b): np.asarray(v, np.float64).reshape(-1, 3) for b, v in (mesh_points or {}).items()}
        self.moving = None if moving is None else frozenset(int(b) for b in moving)

    def __len__(self):
        return len(self.names)

    def index(self, name):
        try:
            return self.names.index(name)
        except ValueError:
            raise SkeletonError(f"the armature has no bone named {name!r}") from None

    @property
    def world_rest_rotations(self):
        """(B,3,3) rest bone orientations in the world frame."""
        return self.object_rotation @ self.rest[:, :3, :3]

    @property
    def world_heads(self):
        return self.rest[:, :3, 3] @ self.object_matrix[:3, :3].T + self.object_matrix[:3, 3]

    @property
    def world_tails(self):
        tails = self.rest[:, :3, 3] + self.rest[:, :3, 1] * self.lengths[:, None]
        return tails @ self.object_matrix[:3, :3].T + self.object_matrix[:3, 3]

    def world_axes(self):
        """(B,3) unit y axis of each bone in the world frame."""
        return normalize(self.world_rest_rotations[:, :, 1])

    @classmethod
    def from_motion(cls, motion):
        """The rest skeleton of a Motion (identity rotations at its offsets) in Blender's z-up world."""
        J = len(motion.joint_names)
        heads = np.zeros((J, 3))
        for j, p in enumerate(motion.parents):
            heads[j] = motion.offsets[j] if p < 0 else heads[p] + motion.offsets[j]
        rest = np.tile(np.eye(4), (J, 1, 1))
        rest[:, :3, 3] = heads
        children = [[c for c, q in enumerate(motion.parents) if q == j] for j in range(J)]
        lengths = np.array([np.linalg.norm(motion.offsets[c[0]]) if c else 0.0 for c in children])
        positive = lengths[lengths > 1e-9]
        lengths[lengths <= 1e-9] = 0.5 * np.median(positive) if len(positive) else 0.1
        return cls(motion.joint_names, motion.parents, rest, lengths, _YUP_TO_ZUP)


def motion_to_zup():
    """The 4x4 that takes a Motion's y-up coordinates into Blender's z-up world."""
    return _YUP_TO_ZUP.copy()

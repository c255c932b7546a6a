"""One entry point for every motion file MotionMill takes: load_any(path) -> Motion.

Recognised by content first (zip / .npy magic bytes, "HIERARCHY"), the extension only as a hint:
  interchange .npz (has `rotations`), AMASS .npz (has `poses`), 272-feature .npy (shape (T, 272)), .bvh.
"""
import os

from . import amass, bvh, interchange, motion272, safe_read
from .motion import MotionError

ACCEPTED = ("interchange .npz (rotations, translation, fps), AMASS .npz (poses, trans, mocap_framerate), "
            "272-feature .npy (frames, 272), or .bvh")
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def _kind(path):
    head = safe_read.read_regular(path, head=64)   # refuses FIFOs, devices and sockets without blocking on them
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").upper().startswith(b"HIERARCHY"):
        return "bvh"
    if os.path.splitext(str(path))[1].lower() == ".bvh":
        return "bvh"  # let the BVH reader say what is wrong with it
    return None


def load_any(path, bvh_scale=1.0, bvh_up="Y"):
    """Any accepted motion file -> Motion. bvh_scale / bvh_up are read_bvh's scale and up (BVH only)."""
    kind = _kind(path)
    if kind == "bvh":
        return bvh.read_bvh(path, scale=bvh_scale, up=bvh_up)
    if kind == "npz":
        arrays = safe_read.load_npz(path)
        keys = set(arrays)
        if "rotations" in keys:
            return interchange.load_interchange(path, arrays)[0]
        if "poses" in keys:
            return amass.load_amass(path, arrays)
        raise MotionError(f"{path}: a .npz with keys {sorted(keys)} is not a motion; accepted: {ACCEPTED}")
    if kind == "npy":
        features = safe_read.load_npy(path)
        if features.ndim == 2 and features.shape[1] == motion272.NUM_FEATURES:
            try:
                return motion272.features_to_motion(features)
            except MotionError as e:
                raise MotionError(f"{path}: {e}") from None
        raise MotionError(f"{path}: a .npy of shape {features.shape} is not a motion; accepted: {ACCEPTED}")
    raise MotionError(f"{path}: unrecognised motion file; accepted: {ACCEPTED}")

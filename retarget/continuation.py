"""Long motions in numpy: the SMPL-22 view of an input, the tail the model continues from, putting a
continuation back into the input's world, and the seam measures that say whether the join is visible.

Conventions: Motion on SMPL-22, y up, metres. A continuation is decoded in the canonical frame of the tail
(tail frame 0 at the x/z origin facing +Z, the tail's floor at y = 0), prefix frames first.
"""
import codecs
from dataclasses import replace

import numpy as np

from . import smpl
from .formats import load_any
from .motion import Motion, MotionError
from .motion272 import FPS, canonicalize, yaw_matrix
from .rotations import matrix_to_quaternion, quaternion_slerp, quaternion_to_matrix

MAX_CONTEXT_SECONDS = 10.0   # the most of a motion that conditions what comes next (one decoding pass)


def read_text_lines(path, what):
    """The lines of a text file (a timeline, a prompts file) in UTF-8, with or without a byte-order mark; anything
    else is a one-line MotionError naming the file and the line. OSError is the caller's to word."""
    with open(path, "rb") as f:
        data = f.read()
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise MotionError(f"{what} {path}, line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                          "save it as UTF-8") from None


def timeline_lines(lines):
    """The segments of a timeline text, one `SECONDS PROMPT` line each (blank lines and # comments skipped), as
    [(line number, seconds or None where the line does not start with a number, prompt, the line)]; the CLI's
    timeline files and Blender's text blocks are read alike, each side says what is wrong in its own words."""
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        head, _, prompt = text.partition(" ")
        try:
            seconds = float(head.rstrip("s"))
        except ValueError:
            seconds = None
        out.append((n, seconds, prompt, text))
    return out


def check_context(seconds):
    """Refuse a context that is not 0-MAX_CONTEXT_SECONDS of motion."""
    if not (np.isfinite(seconds) and 0 < seconds <= MAX_CONTEXT_SECONDS):
        raise MotionError(f"the context must be 0-{MAX_CONTEXT_SECONDS:g} s of motion, got {seconds:g} s")


def load_continuable(path, context_seconds, frames_per_token=2):
    """The motion file at `path` on SMPL-22 at 30 fps, checked to give `context_seconds` of context to continue
    from: the CLI (before it imports torch) and the service refuse a one-frame motion with the same line."""
    check_context(context_seconds)
    source = as_smpl22(load_any(path), path)
    reach = np.abs(source.translation).max()
    if not reach < np.finfo(np.float32).max:   # a clip is stored in float32: its continuation would be infinite
        raise MotionError(f"{path}: its translation reaches {reach:.3g} m, beyond what a clip can hold (float32, "
                          "3.4e38); it is not a usable motion")
    try:
        tail(source, context_seconds, frames_per_token)
    except MotionError as err:
        raise MotionError(f"{path}: {err}") from None
    return source


def as_smpl22(motion, source="the motion"):
    """The motion on SMPL-22 (joints matched by name, case-insensitive; extra leaf joints such as palms are
    dropped), at 30 fps. Other skeletons are refused with one line: retarget them onto SMPL first."""
    names = [n.lower() for n in motion.joint_names]
    missing = [n for n in smpl.JOINT_NAMES if n not in names]
    if missing:
        raise MotionError(f"{source}: continuing needs an SMPL-22 skeleton (joints named {smpl.JOINT_NAMES[0]}, "
                          f"{smpl.JOINT_NAMES[1]}, ...); missing {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''}: import it onto an SMPL rig first")
    index = [names.index(n) for n in smpl.JOINT_NAMES]
    for j, p in enumerate(smpl.PARENTS):
        if p >= 0 and motion.parents[index[j]] != index[p]:
            raise MotionError(f"{source}: joint {motion.joint_names[index[j]]} is not a child of "
                              f"{motion.joint_names[index[p]]} as on SMPL-22")
    m = Motion(motion.rotations[:, index], motion.translation, motion.fps)
    return m.resample(FPS) if motion.fps != FPS else m


def tail(motion, seconds, frames_per_token=2):
    """The last `seconds` of a 30 fps motion, a whole number of tokens long (at least one)."""
    if not np.isfinite(seconds) or seconds <= 0:
        raise MotionError(f"the context length must be a positive number of seconds, got {seconds}")
    if motion.num_frames < frames_per_token:
        raise MotionError(f"the motion has {motion.num_frames} frame(s); continuing needs at least {frames_per_token}")
    frames = min(motion.num_frames, int(round(seconds * motion.fps)))
    frames -= frames % frames_per_token
    if frames < frames_per_token:
        raise MotionError(f"a context of {seconds:g} s is less than one token ({frames_per_token} frames at "
                          f"{motion.fps:g} fps); use a longer context")
    return replace(motion, rotations=motion.rotations[-frames:], translation=motion.translation[-frames:])


def canonical_tail(motion):
    """(canonical Motion, floor y): the tail put where the model expects a clip to start; floor is its lowest joint."""
    _, joints = smpl.forward_kinematics(motion.rotations, motion.translation, motion.offsets, motion.parents)
    canon, _ = canonicalize(motion, joints)
    return canon, float(joints[..., 1].min())


def _facing(root_rotation):
    """Yaw angle (radians) of a (3,3) root rotation's facing."""
    return float(np.arctan2(root_rotation[0, 2], root_rotation[2, 2]))


def smoothstep(n):
    """Weights of the decoded motion over n fade frames: rising from near 0 to near 1, flat at both ends."""
    s = np.arange(1, n + 1) / (n + 1)
    return s * s * (3 - 2 * s)


def fade_length(anchor, rotation_gap, pelvis_gap, least=10, most=60):
    """Frames to ease a join's gap out over (rotation_gap: the largest joint's, radians; pelvis_gap: metres), so that
    no frame takes more of it than the input's own 95th-percentile step: smoothstep's steepest frame carries 1.5/(n+1)
    of the gap. At least `least` frames, at most `most` (2 s at 30 fps: a longer fade would be a motion of its own)."""
    p_pelvis, p_rot = ordinary_steps(anchor)
    need = max(rotation_gap / max(p_rot, 1e-6), pelvis_gap / max(p_pelvis, 1e-6))
    return int(np.clip(np.ceil(1.5 * need) - 1, least, most))


def place_continuation(decoded, prefix_frames, anchor, floor, fade_frames=None):
    """The decoded frames after the prefix, put in the input's world frame, joined to its last pose.

    decoded: Motion in the tail's canonical frame, prefix frames first. anchor: the input motion (30 fps,
    SMPL-22); its last frame is the pose to continue. floor: the tail's floor height in the input's world.
    A yaw and an x/z shift carry the decoded last prefix frame onto the input's last frame, so heading and
    pelvis path continue. What reconstruction leaves between the two (joint rotations, pelvis height) is
    faded out: the first fade_frames cross-fade, with smoothstep weights, from the decoded motion offset to
    start exactly at the input's last pose (slerp rotations, lerp translation) to the decoded motion itself.
    fade_frames None: as many as the gap needs (fade_length), so a model output that starts far from the input's
    last pose is eased in at the input's own pace, not in ten frames.
    """
    if decoded.num_frames <= prefix_frames:
        raise MotionError("the continuation has no frames after its prefix")
    seam = prefix_frames - 1                                  # decoded frame that stands for the input's last frame
    last_rot, last_pos = anchor.rotations[-1], anchor.translation[-1]
    turn = yaw_matrix(np.array(_facing(last_rot[0]) - _facing(decoded.rotations[seam, 0])))   # (3,3)

    rotations = decoded.rotations.copy()
    rotations[:, 0] = turn @ rotations[:, 0]
    translation = (decoded.translation - decoded.translation[seam]) @ turn.T
    translation[:, [0, 2]] += last_pos[[0, 2]]
    translation[:, 1] = decoded.translation[:, 1] + floor

    new_rot, new_pos = rotations[prefix_frames:], translation[prefix_frames:]
    offset_rot = last_rot @ np.swapaxes(rotations[seam], -1, -2)               # (22,3,3): seam frame -> input's last
    offset_pos = last_pos - translation[seam]
    if fade_frames is None:
        fade_frames = fade_length(anchor, float(rotation_angles(offset_rot, np.eye(3)).max()),
                                  float(np.linalg.norm(offset_pos)))
    n = min(fade_frames, len(new_rot))
    if n:
        at_input = offset_rot[None] @ new_rot[:n]                              # starts exactly where the input ends
        w = smoothstep(n)
        q = quaternion_slerp(matrix_to_quaternion(at_input), matrix_to_quaternion(new_rot[:n]),
                             np.broadcast_to(w[:, None], (n, new_rot.shape[1])))
        new_rot = np.concatenate([quaternion_to_matrix(q), new_rot[n:]])
        new_pos = new_pos.copy()
        new_pos[:n] += (1 - w)[:, None] * offset_pos
    return Motion(new_rot, new_pos, decoded.fps)


def rotation_angles(a, b):
    """Angle (radians) between rotation matrices a and b, elementwise over leading dims."""
    cos = (np.einsum("...ij,...ij->...", a, b) - 1) / 2          # trace(a^T b) = sum a*b
    return np.arccos(np.clip(cos, -1.0, 1.0))


def frame_steps(motion):
    """(pelvis step (T-1,) metres, joint rotation change (T-1, 22) radians) between consecutive frames."""
    pelvis = np.linalg.norm(np.diff(motion.translation, axis=0), axis=-1)
    rot = rotation_angles(motion.rotations[1:], motion.rotations[:-1])
    return pelvis, rot


def seam(before, after):
    """(pelvis step, per-joint rotation change (22,)) from before's last frame to after's first."""
    pelvis = float(np.linalg.norm(after.translation[0] - before.translation[-1]))
    return pelvis, rotation_angles(after.rotations[0], before.rotations[-1])


def ordinary_steps(motion, percentile=95):
    """(pelvis metres, joint rotation radians) frame-to-frame steps at the given percentile, the rotation one over
    all joints and frames (a joint that never moves in the capture would otherwise allow nothing): the size a
    join should not exceed."""
    pelvis, rot = frame_steps(motion)
    return float(np.percentile(pelvis, percentile)), float(np.percentile(rot, percentile))


"""BVH reading and writing for any skeleton.

Conventions:
- A joint's rotation channels are intrinsic Euler angles in degrees, applied in the order listed:
  "Zrotation Yrotation Xrotation" means R = Rz @ Ry @ Rx (the same as Blender's importer).
- Position channels give the joint's position in its parent's frame and REPLACE its OFFSET (Blender's
  reading); axes without a channel keep the OFFSET's value. For the root this is its world position.
  A non-root joint's position channels are folded into its offset when they are constant over the
  clip; animated ones are rejected (a Motion has fixed bone offsets).
- End Sites are not joints. Offsets and positions are multiplied by `scale` (default 1: metres).
- Motion is y up. read_bvh(up="Z") turns a Z-up file (and its rest skeleton) into y up.

Files from the MotionMillion / 272 reference writer have ROOT OFFSET = the SMPL pelvis offset
(-0.0018, -0.2233, 0.0282) and position channels = that offset + the pelvis, so they read (here and in
Blender) about 0.22 m low. read_bvh keeps what the file says: `offsets[0]` holds the ROOT OFFSET and
`undo_reference_root_offset` moves such a motion to the real pelvis. write_bvh writes ROOT OFFSET 0 0 0
and the pelvis as position channels, which every reader places at the real pelvis.
"""
import io

import numpy as np

from .motion import Motion, MotionError
from .interchange import write_whole
from .safe_read import MAX_FRAMES, MAX_JOINTS, read_regular
from .rotations import axis_angle_to_matrix, matrix_to_euler

_AXIS_VECTORS = {"X": np.array([1.0, 0, 0]), "Y": np.array([0, 1.0, 0]), "Z": np.array([0, 0, 1.0])}
_CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
_Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # -90 deg about X: (x, y, z) -> (x, z, -y)
UNIT_SCALES = {"m": 1.0, "cm": 0.01, "inch": 0.0254}


# ---------------------------------------------------------------------------------------------- writing
def _children(parents):
    kids = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            kids[p].append(j)
    return kids


def _hierarchy_order(parents):
    """Joints depth first, children in index order: the order the hierarchy and the channel data use."""
    kids, roots = _children(parents), [j for j, p in enumerate(parents) if p < 0]
    if len(roots) != 1:
        raise MotionError(f"a BVH skeleton needs exactly one root joint, this one has {len(roots)}")
    order, stack = [], roots[:]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(kids[j]))
    return order


def _fmt(values):
    return " ".join(f"{v:.9g}" for v in values)


def write_bvh(path, motion, order="ZYX"):
    """Write `motion` (any skeleton) as BVH in metres, y up: ROOT OFFSET 0 0 0 with the root position as
    channels, Euler channels in `order` (intrinsic, degrees), Frame Time = 1/fps, End Sites on leaf joints."""
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise MotionError(f"Euler order must use X, Y and Z once each, got '{order}'")
    names, parents = list(motion.joint_names), list(motion.parents)
    for n in names:
        if not n or any(c.isspace() for c in n):
            raise MotionError(f"joint name {n!r} cannot be written to BVH: names must be non-empty without spaces")
    joint_order, kids = _hierarchy_order(parents), _children(parents)
    rot_channels = " ".join(f"{a}rotation" for a in order)
    lines = ["HIERARCHY"]

    def emit(j, depth):
        pad = "\t" * depth
        is_root = parents[j] < 0
        offset = np.zeros(3) if is_root else motion.offsets[j]
        lines.append(f"{pad}{'ROOT' if is_root else 'JOINT'} {names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {_fmt(offset)}")
        if is_root:
            lines.append(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}\tCHANNELS 3 {rot_channels}")
        for c in kids[j]:
            emit(c, depth + 1)
        if not kids[j]:
            lines.extend([f"{pad}\tEnd Site", pad + "\t{", f"{pad}\t\tOFFSET 0 0 0", pad + "\t}"])
        lines.append(pad + "}")

    emit(joint_order[0], 0)
    euler = np.degrees(matrix_to_euler(motion.rotations[:, joint_order], order))  # (T, J, 3)
    data = np.concatenate([motion.translation, euler.reshape(motion.num_frames, -1)], axis=1)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.9g}"]
    lines += [_fmt(row) for row in data]
    text = ("\n".join(lines) + "\n").encode("utf-8")
    write_whole(path, lambda fh: fh.write(text))


# ---------------------------------------------------------------------------------------------- reading
class _Skeleton:
    def __init__(self):
        self.names, self.parents, self.offsets, self.channels = [], [], [], []
        self.end_sites = []  # (parent joint, offset)


def _tokens(lines):
    for number, line in lines:
        for tok in line.split():
            yield number, tok


def _bounded_tokens(path, lines):
    """The hierarchy's tokens, refusing a skeleton of more than MAX_JOINTS joints before tokenising all of it."""
    toks, joints = [], 0
    for number, tok in _tokens(lines):
        if tok.upper() in ("ROOT", "JOINT"):
            joints += 1
            if joints > MAX_JOINTS:
                raise MotionError(f"{path}: line {number}: more than {MAX_JOINTS} joints; no rig has that many, "
                                  "so this is not a skeleton MotionMill can read")
        toks.append((number, tok))
    return toks


def _parse_hierarchy(path, lines):
    """Token-wise parse of the lines before MOTION -> _Skeleton."""
    sk = _Skeleton()
    toks = _bounded_tokens(path, lines)
    if not toks or toks[0][1].upper() != "HIERARCHY":
        raise MotionError(f"{path}: not a BVH file: it must start with HIERARCHY")
    i, stack, pending = 1, [], None  # pending: 'joint' or 'end' awaiting '{'
    seen = set()

    def take(n, what, line):
        nonlocal i
        if i + n > len(toks):
            raise MotionError(f"{path}: line {line}: {what} is cut short at the end of the hierarchy")
        vals = toks[i:i + n]
        i += n
        return vals

    while i < len(toks):
        line, tok = toks[i]
        i += 1
        key = tok.upper()
        if key in ("ROOT", "JOINT"):
            if key == "ROOT" and (sk.names or stack):
                raise MotionError(f"{path}: line {line}: a second ROOT; only one skeleton per file is supported")
            if key == "JOINT" and not stack:
                raise MotionError(f"{path}: line {line}: JOINT outside any ROOT")
            (_, name), = take(1, f"{tok} name", line)
            if name in seen:
                raise MotionError(f"{path}: line {line}: joint name '{name}' is used twice")
            seen.add(name)
            sk.names.append(name)
            sk.parents.append(stack[-1] if stack else -1)
            sk.offsets.append(np.zeros(3))
            sk.channels.append([])
            pending = ("joint", len(sk.names) - 1)
        elif key == "END":
            (_, site), = take(1, "End Site", line)
            if site.upper() != "SITE" or not stack:
                raise MotionError(f"{path}: line {line}: expected 'End Site' inside a joint, got 'End {site}'")
            pending = ("end", stack[-1])
        elif tok == "{":
            if pending is None:
                raise MotionError(f"{path}: line {line}: '{{' without a ROOT, JOINT or End Site before it")
            stack.append(pending[1] if pending[0] == "joint" else ("end", pending[1]))
            pending = None
        elif tok == "}":
            if not stack:
                raise MotionError(f"{path}: line {line}: unmatched '}}'")
            stack.pop()
        elif key == "OFFSET":
            vals = take(3, "OFFSET", line)
            try:
                offset = np.array([float(v) for _, v in vals])
            except ValueError:
                raise MotionError(f"{path}: line {line}: OFFSET needs 3 numbers, got {' '.join(v for _, v in vals)}") from None
            if not stack:
                raise MotionError(f"{path}: line {line}: OFFSET outside any joint")
            top = stack[-1]
            if isinstance(top, tuple):
                sk.end_sites.append((top[1], offset))
            else:
                sk.offsets[top] = offset
        elif key == "CHANNELS":
            (_, count), = take(1, "CHANNELS count", line)
            if not count.isdigit() or not stack or isinstance(stack[-1], tuple):
                raise MotionError(f"{path}: line {line}: CHANNELS needs a count inside a joint, got '{count}'")
            names = [v for _, v in take(int(count), "CHANNELS list", line)]
            for n in names:
                if n.capitalize() not in _CHANNELS:
                    raise MotionError(f"{path}: line {line}: unknown channel '{n}' (expected X/Y/Z position/rotation)")
            sk.channels[stack[-1]] = [n.capitalize() for n in names]
        else:
            raise MotionError(f"{path}: line {line}: unexpected '{tok}' in the hierarchy")
    if stack:
        raise MotionError(f"{path}: the hierarchy has {len(stack)} unclosed '{{' before MOTION")
    if not sk.names:
        raise MotionError(f"{path}: the hierarchy has no ROOT joint")
    return sk


def _read_lines(path):
    data = read_regular(path)   # bounded, and never blocks on a FIFO or a device (safe_read)
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")   # newlines as open() reads them
    return [(n + 1, line.strip()) for n, line in enumerate(text)]


def _split_motion(path, lines):
    first = next((t for _, t in lines if t), "")
    if first.split()[:1] != ["HIERARCHY"] and first.upper() != "HIERARCHY":
        raise MotionError(f"{path}: not a BVH file: it must start with HIERARCHY")
    for k, (_, text) in enumerate(lines):
        if text.upper() == "MOTION":
            return lines[:k], lines[k + 1:]
    raise MotionError(f"{path}: no MOTION section (the file has a hierarchy but no animation data)")


def _header_value(path, lines, k, label):
    """The number after `label` (e.g. 'Frames:') on the k-th non-empty motion line, and its text."""
    if k >= len(lines):
        raise MotionError(f"{path}: the MOTION section ends before '{label}'")
    number, text = lines[k]
    if not text.lower().startswith(label.lower()):
        raise MotionError(f"{path}: line {number}: expected '{label} <number>', got '{text[:40]}'")
    value = text[len(label):].strip()
    try:
        return float(value), value
    except ValueError:
        raise MotionError(f"{path}: line {number}: '{label}' needs a number, got '{value}'") from None


def _parse_frames(path, lines, sk):
    """Frame lines -> (F, C) float array, checking every line's value count and numbers."""
    lines = [(n, t) for n, t in lines if t]
    frames, _ = _header_value(path, lines, 0, "Frames:")
    frame_time, frame_time_text = _header_value(path, lines, 1, "Frame Time:")
    if frames != int(frames) or frames < 1:
        raise MotionError(f"{path}: line {lines[0][0]}: Frames must be a positive whole number, got {frames:g}")
    if frames > MAX_FRAMES:
        raise MotionError(f"{path}: line {lines[0][0]}: Frames: {frames:g} is more than a motion file may hold "
                          f"({MAX_FRAMES})")
    if not frame_time > 0:
        raise MotionError(f"{path}: line {lines[1][0]}: Frame Time must be positive, got {frame_time:g}")
    labels = [f"{sk.names[j]}.{c}" for j in range(len(sk.names)) for c in sk.channels[j]]
    body = lines[2:]
    if len(body) < int(frames):
        raise MotionError(f"{path}: the header declares Frames: {int(frames)} but there are {len(body)} frame lines")
    body = body[:int(frames)]  # QAvimator writes its key list after the frames; readers (Blender's too) stop at Frames
    data = np.empty((len(body), len(labels)))
    for f, (number, text) in enumerate(body):
        values = text.split()
        if len(values) != len(labels):
            raise MotionError(f"{path}: line {number}: frame {f} has {len(values)} values, the hierarchy has {len(labels)} channels")
        try:
            data[f] = [float(v) for v in values]
        except ValueError:
            bad = next(c for c, v in enumerate(values) if not _is_number(v))
            raise MotionError(f"{path}: line {number}: value '{values[bad]}' for channel {labels[bad]} is not a number") from None
    if not np.isfinite(data).all():
        f, c = np.argwhere(~np.isfinite(data))[0]
        raise MotionError(f"{path}: line {body[f][0]}: channel {labels[c]} is not finite ({data[f, c]})")
    return data, fps_from_frame_time(frame_time_text)


def fps_from_frame_time(text):
    """Frames per second from a printed Frame Time: a whole rate when the text is that rate's frame time
    rounded to the printed digits (0.033333 -> 30, not 30.0003), else 1 / frame time."""
    frame_time = float(text)
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text.lower() else None
    whole = round(1.0 / frame_time)
    if decimals is not None and whole > 0 and abs(1.0 / whole - frame_time) <= 0.5 * 10.0 ** -decimals:
        return float(whole)
    return 1.0 / frame_time


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _joint_rotations(angles_deg, axes):
    """(..., k) Euler angles for channel axes like 'ZYX' (any subset/order) -> (..., 3, 3) = R_a0 @ R_a1 @ ..."""
    R = np.broadcast_to(np.eye(3), angles_deg.shape[:-1] + (3, 3)).copy()
    for k, a in enumerate(axes):
        R = R @ axis_angle_to_matrix(np.radians(angles_deg[..., k, None]) * _AXIS_VECTORS[a])
    return R


def _rotations(data, sk):
    """(F, J, 3, 3) local rotations from the channel data, computed for all joints with the same rotation axes at
    once: one numpy call per axis order, not per joint, keeps a skeleton of thousands of joints fast."""
    groups, column = {}, 0      # rotation axes ('ZYX') -> ([joint], [[column per axis]])
    for j, channels in enumerate(sk.channels):
        cols = {c: column + k for k, c in enumerate(channels)}
        column += len(channels)
        axes = "".join(c[0] for c in channels if c.endswith("rotation"))
        joints, columns = groups.setdefault(axes, ([], []))
        joints.append(j)
        columns.append([cols[a + "rotation"] for a in axes])
    rotations = np.empty((data.shape[0], len(sk.names), 3, 3))
    for axes, (joints, columns) in groups.items():
        rotations[:, joints] = _joint_rotations(data[:, np.array(columns, dtype=np.intp).reshape(len(joints), -1)], axes)
    return rotations


def rest_height(offsets, parents, up="Y", end_sites=()):
    """Extent of the rest skeleton (joints and end sites) along the up axis, in the file's units."""
    pos = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        pos[j] = offsets[j] + (pos[p] if p >= 0 else 0)
    points = [pos] + [(pos[j] + o)[None] for j, o in end_sites]
    axis = {"Y": 1, "Z": 2}[up.upper()]
    heights = np.concatenate(points)[:, axis]
    return float(heights.max() - heights.min())


def guess_unit_scale(height):
    """Metres per file unit for a human skeleton of rest `height`: 1 (m), 0.0254 (inches) or 0.01 (cm).

    Assumes an adult-sized body (about 1.7 m joint-to-joint ~ 1.4-1.8): the boundaries are the geometric
    means between the typical heights in each unit (1.7 m, 67 in, 170 cm), 10.7 and 107."""
    if not height > 0:
        raise MotionError("cannot guess units: the rest skeleton has no height")
    if height < 10.7:
        return UNIT_SCALES["m"]
    if height < 107:
        return UNIT_SCALES["inch"]
    return UNIT_SCALES["cm"]


def guess_bvh_scale(path, up="Y"):
    """Metres per unit of a BVH file, guessed from its rest skeleton height (see guess_unit_scale)."""
    hierarchy, _ = _split_motion(path, _read_lines(path))
    sk = _parse_hierarchy(path, hierarchy)
    return guess_unit_scale(rest_height(np.array(sk.offsets), sk.parents, up, sk.end_sites))


def read_bvh(path, scale=1.0, up="Y"):
    """Read any BVH skeleton -> Motion (y up, metres after `scale`; scale="auto" guesses m/cm/inch).

    The Motion's offsets[0] is the ROOT OFFSET and its translation the root's position channels (see the
    module notes). up="Z" converts a Z-up file to y up."""
    if up.upper() not in ("Y", "Z"):
        raise MotionError(f"up must be 'Y' or 'Z', got {up!r}")
    lines = _read_lines(path)
    hierarchy, motion_lines = _split_motion(path, lines)
    sk = _parse_hierarchy(path, hierarchy)
    data, fps = _parse_frames(path, motion_lines, sk)
    offsets = np.array(sk.offsets)
    if scale == "auto":
        scale = guess_unit_scale(rest_height(offsets, sk.parents, up, sk.end_sites))
    scale = float(scale)
    if not scale > 0:
        raise MotionError(f"scale must be positive, got {scale}")

    F = data.shape[0]
    moving = {}  # non-root joint -> (F,3) animated position in its parent's frame
    rotations = _rotations(data, sk)
    translation = np.broadcast_to(offsets[0], (F, 3)).copy()
    column = 0
    for j, channels in enumerate(sk.channels):
        cols = {c: column + k for k, c in enumerate(channels)}
        column += len(channels)
        pos_cols = [(k, cols[a + "position"]) for k, a in enumerate("XYZ") if a + "position" in cols]
        if not pos_cols:
            continue
        if sk.parents[j] < 0:
            for k, c in pos_cols:
                translation[:, k] = data[:, c]
        else:
            values = data[:, [c for _, c in pos_cols]]
            spread = np.ptp(values, axis=0).max()
            if spread > 1e-6 * max(1.0, np.abs(values).max()):
                moving[j] = np.broadcast_to(offsets[j], (F, 3)).copy()
                for (k, _), v in zip(pos_cols, values.T):
                    moving[j][:, k] = v
                continue
            for (k, _), v in zip(pos_cols, values[0]):
                offsets[j, k] = v  # constant channels replace the OFFSET, as Blender reads them
    names, parents = tuple(sk.names), tuple(sk.parents)
    if moving:
        names, parents, rotations, translation, offsets = _fold_into_root(path, names, parents, rotations, translation,
                                                                          offsets, moving)

    offsets, translation = offsets * scale, translation * scale
    if up.upper() == "Z":
        C = _Z_UP_TO_Y_UP
        rotations = C @ rotations @ C.T  # the whole rest skeleton turns with the world
        offsets, translation = offsets @ C.T, translation @ C.T
    return Motion(rotations, translation, fps, names, parents, offsets)


def _fold_into_root(path, names, parents, rotations, translation, offsets, moving):
    """A skeleton whose translating joint sits below the root (Bandai-Namco's static joint_Root above a moving Hips)
    re-rooted at that joint: the joints above it, each with that one child, fold their transforms into it and are
    dropped. A Motion translates its root only, so a translating joint beside other branches is refused."""
    if len(moving) > 1:
        raise MotionError(f"{path}: joints {', '.join(names[j] for j in moving)} all have animated position channels; "
                          f"only one translating joint (the root or one below a chain of single joints) can be read")
    (j, local_pos), = moving.items()
    chain, p = [], parents[j]
    while p >= 0:
        chain.append(p)
        p = parents[p]
    children = np.bincount([q for q in parents if q >= 0], minlength=len(parents))
    branching = [a for a in chain if children[a] > 1]
    if branching:
        raise MotionError(f"{path}: joint {names[j]} has animated position channels below {names[branching[0]]}, which "
                          f"has other children; only the root, or a joint below a chain of single joints, may translate")
    R, t = rotations[:, chain[-1]], translation           # the root's world transform, then down the chain
    for a in reversed(chain[:-1]):
        t = t + np.einsum("fij,j->fi", R, offsets[a])
        R = R @ rotations[:, a]
    t = t + np.einsum("fij,fj->fi", R, local_pos)
    rest = offsets[chain].sum(0) + offsets[j]
    folded = set(chain)
    keep = [k for k in range(len(names)) if k not in folded]
    new_index = {old: new for new, old in enumerate(keep)}
    rotations = rotations[:, keep].copy()
    rotations[:, new_index[j]] = R @ rotations[:, new_index[j]]
    offsets = offsets[keep].copy()
    offsets[new_index[j]] = rest
    return (tuple(names[k] for k in keep), tuple(new_index.get(parents[k], -1) for k in keep), rotations, t, offsets)


def undo_reference_root_offset(motion):
    """A motion read from a MotionMillion / 272 reference BVH, moved to the real pelvis.

    That writer stores ROOT OFFSET = SMPL's pelvis offset and position channels = offset + pelvis, so the
    read translation is the pelvis + offsets[0] (about 0.22 m low). Returns the motion with translation
    = pelvis and offsets[0] = 0."""
    offsets = motion.offsets.copy()
    offsets[0] = 0.0
    return Motion(motion.rotations, motion.translation - motion.offsets[0], motion.fps,
                  motion.joint_names, motion.parents, offsets)


def reorder_joints(motion, names):
    """The same motion with its joints listed in the order of `names` (all of the motion's joints, parents
    before children), e.g. a BVH read back in SMPL order: BVH files list joints depth first."""
    names = tuple(names)
    if sorted(names) != sorted(motion.joint_names):
        raise MotionError(f"reorder_joints needs exactly the motion's joints; missing or extra: "
                          f"{sorted(set(names) ^ set(motion.joint_names))}")
    index = [motion.joint_names.index(n) for n in names]
    old_to_new = {old: new for new, old in enumerate(index)}
    parents = tuple(-1 if motion.parents[i] < 0 else old_to_new[motion.parents[i]] for i in index)
    if any(p >= j for j, p in enumerate(parents)):
        raise MotionError("reorder_joints: every joint's parent must come before it")
    return Motion(motion.rotations[:, index], motion.translation, motion.fps, names, parents, motion.offsets[index])

"""The motion interchange .npz (DESIGN.md contract 3) between the backend and the Blender add-on.

Keys: `rotations` (T,22,3,3) float32 local rotations, SMPL order, root with heading; `translation` (T,3)
pelvis position, y up, metres; `fps`; optional `features` (T,272), `tokens` (N,), `prompt` (str),
`joints` (T,22,3). Any other key (seed, model, ...) is an extra, kept as written.
"""
import errno
import io
import os
import secrets
import socket
import time

import numpy as np

from . import smpl
from .motion import Motion, MotionError
from .safe_read import load_npz

REQUIRED = ("rotations", "translation", "fps")
OPTIONAL = ("features", "tokens", "prompt", "joints")

# Every temp file MotionMill writes beside its outputs: "<prefix><host>-<pid>-<random><suffix>", so a later run
# can tell its own leftovers (a writer killed mid-write) from anything else in the folder.
TEMP_PREFIX = ".motionmill-tmp-"
STALE_TEMP_S = 3600      # a clip is written in milliseconds: an older temp is a leftover whoever wrote it


def create_temp(folder, suffix):
    """(fd, path) of a new temp file in `folder`; created with mode 0o666 so the umask applies, as for any output."""
    path = os.path.join(folder, f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path


def _writer_gone(name):
    host, _, rest = name[len(TEMP_PREFIX):].rpartition("-")[0].rpartition("-")
    pid = int(rest) if rest.isdigit() else None
    if host != socket.gethostname() or pid is None or os.name != "posix":
        return False              # another machine's process (a shared folder), or no safe liveness test here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale_temps(folder):
    """Remove MotionMill temp files left in `folder` by writers that died; nothing else. Returns how many."""
    removed = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            if _writer_gone(name) or time.time() - os.lstat(path).st_mtime > STALE_TEMP_S:
                os.remove(path)
                removed += 1
        except OSError:
            continue              # gone already (another run cleaned it), or not ours to remove
    return removed


def write_whole(path, write):
    """Write the file at `path` whole or not at all: `write(binary file)` fills a temp file in the same folder, which
    then replaces `path`; on any error the temp file is removed. A path naming a device or a pipe (/dev/stdout) is
    written to directly (a rename would replace the device). A failed write is a one-line MotionError naming the path
    and, for a full disk, where the space ran out."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MotionError(f"{path} is a folder: name the file to write")
    direct = os.path.exists(path) and not os.path.isfile(path)
    where = path if direct else os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        if direct:
            with open(path, "wb") as fh:
                write(fh)
            return
        fd, tmp = create_temp(where, os.path.splitext(path)[1])
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)  # readers never see a half-written file
        tmp = None
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise MotionError(f"cannot write {path}: no space left on {where}; free some space or write elsewhere") from None
        raise MotionError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def save_motion(path, motion, **extras):
    """Write `motion` (+ optional keys and extras) to `path` atomically: a temp file in the same folder, then os.replace."""
    if motion.rotations.shape[1] != smpl.NUM_JOINTS:
        raise MotionError(f"the interchange format holds SMPL-22 motions, this one has {motion.rotations.shape[1]} joints")
    with np.errstate(over="ignore"):   # refused below, by name
        arrays = {
            "rotations": motion.rotations.astype(np.float32),
            "translation": motion.translation.astype(np.float32),
            "fps": np.float32(motion.fps),
        }
    for key, value in extras.items():
        if key in arrays:
            raise MotionError(f"extra '{key}' would overwrite the motion's own '{key}'")
        if value is not None:
            arrays[key] = np.asarray(value)
            if arrays[key].dtype == object:
                raise MotionError(f"extra '{key}' must be a number, a string or an array, got {type(value).__name__}")
    for key, value in arrays.items():   # a clip with NaN or infinity is never written (nor read back, read_interchange)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise MotionError(f"{path}: not written: its '{key}' would hold NaN or infinite values (NaN, or beyond "
                              "float32's 3.4e38); the motion it came from is not usable")
    buf = io.BytesIO()   # built in memory (a clip is under a megabyte): a failed write then leaves no zip half-open
    np.savez(buf, **arrays)
    write_whole(path, lambda fh: fh.write(buf.getbuffer()))


def read_npz(path):
    """Every array of an .npz file (no pickles; bounded, see safe_read), or a one-line MotionError."""
    return load_npz(path)


def _check(path, arrays):
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise MotionError(f"{path}: missing key(s) {', '.join(missing)}; an interchange .npz needs {', '.join(REQUIRED)}")
    R, t = arrays["rotations"], arrays["translation"]
    if R.ndim != 4 or R.shape[1:] != (smpl.NUM_JOINTS, 3, 3):
        raise MotionError(f"{path}: 'rotations' must have shape (frames, 22, 3, 3), got {R.shape}")
    if t.shape != (R.shape[0], 3):
        raise MotionError(f"{path}: 'translation' must have shape ({R.shape[0]}, 3), got {t.shape}")
    if arrays["fps"].size != 1:
        raise MotionError(f"{path}: 'fps' must be one number, got shape {arrays['fps'].shape}")
    for key, tail in (("features", (272,)), ("joints", (smpl.NUM_JOINTS, 3))):
        if key in arrays and arrays[key].shape != (R.shape[0],) + tail:
            raise MotionError(f"{path}: '{key}' must have shape {(R.shape[0],) + tail}, got {arrays[key].shape}")
    for key in ("rotations", "translation", "fps", "features", "joints"):
        if key in arrays and not np.isfinite(arrays[key]).all():
            raise MotionError(f"{path}: '{key}' has NaN or infinite values")


def _plain(value):
    return value.item() if value.ndim == 0 else value


def load_interchange(path, arrays=None):
    """(Motion, extras): extras holds every key other than rotations/translation/fps (features, prompt, seed, ...).
    `arrays`: the file's arrays when the caller has read them already."""
    arrays = read_npz(path) if arrays is None else arrays
    _check(path, arrays)
    try:
        motion = Motion(arrays["rotations"], arrays["translation"], float(arrays["fps"]))
    except MotionError as e:
        raise MotionError(f"{path}: {e}") from None
    extras = {k: _plain(v) for k, v in arrays.items() if k not in REQUIRED}
    return motion, extras


def load_motion(path):
    """The Motion in an interchange .npz."""
    return load_interchange(path)[0]

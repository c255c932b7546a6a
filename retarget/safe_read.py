"""Reading a motion file that someone else named (a service request's `continue_from`, `--continue-from`, a motion to
import) without blocking on it and without reading more than a motion can be.

A path can name a FIFO (open() would wait for a writer forever), a device (/dev/zero never ends), a socket, or a
symlink to one of them (x.bvh -> /dev/zero). So a file is opened with O_NONBLOCK (a FIFO opens at once), checked
with fstat to be a regular file, and read only up to MAX_MOTION_BYTES. An .npy array's header declares its shape:
that is checked before anything is allocated, so an .npz claiming 10^12 frames costs nothing.

The limits, from what a motion can be:
- MAX_JOINTS: a body with fingers, face and props has a few hundred joints; 4096 is far beyond any rig.
- MAX_FRAMES: an hour at 120 fps (a long capture session); MotionMill's own clips are 10 s at 30 fps (300 frames).
- MAX_MOTION_BYTES: 256 MiB on disk, or for one unpacked array. A 10 s clip at 30 fps is about 0.3 MB as an
  interchange .npz and 0.6 MB as a 60-joint BVH; a 10-minute 120 fps capture of that body is about 120 MB of BVH.
"""
import ast
import io
import os
import stat
import zipfile

import numpy as np

from .motion import MotionError

MAX_JOINTS = 4096
MAX_FRAMES = 120 * 3600
MAX_MOTION_BYTES = 256 * 2 ** 20

_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind_of(mode):
    return next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")


def _refuse_special(path, mode):
    raise MotionError(f"{path}: is {_kind_of(mode)}, not a motion file; name a regular .npz, .npy or .bvh file")


def read_regular(path, limit=MAX_MOTION_BYTES, head=None):
    """The bytes of the regular file at `path` (its first `head` bytes when given), or a one-line MotionError.
    Never blocks on a FIFO or a device, never reads more than `limit` bytes."""
    try:
        mode = os.stat(path).st_mode     # links followed: a device or a FIFO is refused without being opened
    except FileNotFoundError:
        raise MotionError(f"{path}: no such file") from None
    except OSError as err:
        raise MotionError(f"{path}: cannot read ({err.strerror})") from None
    except (ValueError, TypeError) as err:   # a NUL in the path
        raise MotionError(f"{path!r}: not a usable path ({err})") from None
    if not stat.S_ISREG(mode):
        _refuse_special(path, mode)
    # O_NONBLOCK and fstat again: the path may name a FIFO by now (swapped after the stat), and open() must not wait.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise MotionError(f"{path}: cannot read ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _refuse_special(path, info.st_mode)
        if head is None and info.st_size > limit:
            raise MotionError(f"{path}: {info.st_size:,} bytes is more than a motion file may hold ({limit:,} bytes)")
        want = limit + 1 if head is None else head
        chunks, got = [], 0
        while got < want:
            chunk = os.read(fd, min(want - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as err:
        raise MotionError(f"{path}: cannot read ({err.strerror})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if head is None and len(data) > limit:      # it grew while we read it
        raise MotionError(f"{path}: more than a motion file may hold ({limit:,} bytes)")
    return data


def _npy_header(fh):
    """(shape, dtype) from an .npy stream's header, read as numpy reads it (a Python literal, never executed)."""
    if fh.read(6) != b"\x93NUMPY":
        raise ValueError("not an .npy array")
    major = fh.read(2)[:1]
    size_bytes = 2 if major == b"\x01" else 4
    length = int.from_bytes(fh.read(size_bytes), "little")
    if length > 65536:
        raise ValueError(f"an .npy header of {length} bytes")
    header = ast.literal_eval(fh.read(length).decode("latin1"))
    if not isinstance(header, dict) or not isinstance(header.get("shape"), tuple):
        raise ValueError("an .npy header without a shape")
    shape = header["shape"]
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"an .npy header with shape {shape}")
    return shape, np.dtype(header["descr"])


def check_array_header(path, name, fh):
    """Refuse an array whose declared size is more than a motion holds, before numpy allocates it."""
    try:
        shape, dtype = _npy_header(fh)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
        raise MotionError(f"{path}: {name} is not a readable .npy array ({err})") from None
    count = int(np.prod(shape, dtype=object))
    if shape and shape[0] > MAX_FRAMES or count * dtype.itemsize > MAX_MOTION_BYTES:
        raise MotionError(f"{path}: {name} declares shape {shape}, more than a motion holds (at most "
                          f"{MAX_FRAMES:,} frames, {MAX_MOTION_BYTES:,} bytes)")


def load_npy(path):
    """The array in an .npy file: bounded read, shape checked before allocating, no pickles."""
    data = read_regular(path)
    check_array_header(path, "the array", io.BytesIO(data))
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise MotionError(f"{path}: not a readable .npy file ({err})") from None


def load_npz(path):
    """Every array of an .npz file ({name: array}): bounded read, each array's shape checked before allocating."""
    data = read_regular(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            arrays = {}
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                if info.file_size > MAX_MOTION_BYTES:
                    raise MotionError(f"{path}: {name} unpacks to {info.file_size:,} bytes, more than a motion holds "
                                      f"({MAX_MOTION_BYTES:,} bytes)")
                with zf.open(info) as fh:
                    check_array_header(path, f"'{name}'", fh)
                with zf.open(info) as fh:
                    arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
            return arrays
    except MotionError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as err:
        raise MotionError(f"{path}: not a readable .npz file ({err})") from None

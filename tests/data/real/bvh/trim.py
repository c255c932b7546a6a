"""Trim a BVH file to its first N frames, keeping everything else byte for byte.

Usage:  python trim.py SOURCE.bvh DEST.bvh N

What it does, and nothing more:
- copies every line up to and including the "MOTION" line unchanged (the hierarchy is kept exactly);
- rewrites the "Frames:" line to "Frames: N" (keeping its leading whitespace and the separator that
  followed "Frames:" in the source, e.g. a tab or a space);
- copies the "Frame Time:" line unchanged;
- copies the first N frame lines unchanged and drops every later line (later frames, and any
  trailing non-frame lines such as QAvimator's key lists, which belong to the full clip);
- keeps the source's line endings (LF or CRLF) and its final newline.

If the source has N frames or fewer it is copied unchanged. Standard library only, so the trimming in
SOURCES.md can be repeated from the upstream file. Only use it on files whose licence allows
modification (not on CC BY-NC-ND material such as LaFAN1).
"""
import re
import sys


def trim(src, dst, n):
    with open(src, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    motion = next(i for i, line in enumerate(lines) if line.strip().upper() == b"MOTION")
    frames_i = next(i for i in range(motion + 1, len(lines)) if lines[i].strip())
    match = re.match(rb"(\s*Frames:)(\s*)(\d+)(\s*)$", lines[frames_i])
    if not match:
        raise SystemExit(f"{src}: expected 'Frames: <n>' after MOTION, got {lines[frames_i]!r}")
    total = int(match.group(3))
    time_i = next(i for i in range(frames_i + 1, len(lines)) if lines[i].strip())
    if not lines[time_i].strip().lower().startswith(b"frame time:"):
        raise SystemExit(f"{src}: expected 'Frame Time:' after Frames, got {lines[time_i]!r}")
    if n >= total:
        out = lines
    else:
        eol = re.search(rb"\r?\n$", lines[frames_i])
        new_frames = match.group(1) + (match.group(2) or b" ") + str(n).encode() + (eol.group(0) if eol else b"\n")
        body = lines[time_i + 1:time_i + 1 + n]
        out = lines[:frames_i] + [new_frames] + lines[frames_i + 1:time_i + 1] + body
    with open(dst, "wb") as fh:
        fh.write(b"".join(out))
    return total, min(n, total)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    total, kept = trim(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(f"{sys.argv[1]}: {total} frames -> {kept} kept in {sys.argv[2]}")

"""A small independent GIF89a reader for the preview tests: decodes every frame (LZW) into full RGB canvases."""
import struct

import numpy as np


def _lzw_decode(data, min_size, count):
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    out = bytearray()
    pos = 0
    bits = 0
    acc = 0
    size = min_size + 1
    table = None
    prev = None
    nxt = eoi + 1
    while len(out) < count:
        while bits < size:
            if pos >= len(data):
                return bytes(out)
            acc |= data[pos] << bits
            pos += 1
            bits += 8
        code = acc & ((1 << size) - 1)
        acc >>= size
        bits -= size
        if code == clear:
            table = [bytes([i]) for i in range(clear)] + [b"", b""]
            size, nxt, prev = min_size + 1, eoi + 1, None
            continue
        if code == eoi:
            break
        if prev is None:
            entry = table[code]
        else:
            if code < len(table):
                entry = table[code]
                table.append(prev + entry[:1])
            elif code == len(table):
                entry = prev + prev[:1]
                table.append(entry)
            else:
                raise ValueError(f"bad LZW code {code}")
            nxt = len(table)
            if nxt == (1 << size) and size < 12:
                size += 1
        out += entry
        prev = entry
    return bytes(out)


def read_gif(path):
    """(frames: list of (H,W,3) uint8 canvases, delays in 1/100 s, loops: bool)."""
    b = open(path, "rb").read()
    assert b[:6] == b"GIF89a", b[:6]
    w, h, flags, _, _ = struct.unpack("<HHBBB", b[6:13])
    pos = 13
    gct = None
    if flags & 0x80:
        n = 2 << (flags & 7)
        gct = np.frombuffer(b[pos:pos + 3 * n], np.uint8).reshape(n, 3)
        pos += 3 * n
    canvas = np.zeros((h, w, 3), np.uint8)
    frames, delays, loops, delay = [], [], False, 0
    while True:
        t = b[pos]
        pos += 1
        if t == 0x3B:
            break
        if t == 0x21:
            label = b[pos]
            pos += 1
            blocks = []
            while b[pos]:
                blocks.append(b[pos + 1:pos + 1 + b[pos]])
                pos += 1 + b[pos]
            pos += 1
            if label == 0xF9:
                delay = struct.unpack("<H", blocks[0][1:3])[0]
            if label == 0xFF and blocks[0] == b"NETSCAPE2.0":
                loops = True
            continue
        assert t == 0x2C, hex(t)
        x, y, fw, fh, fl = struct.unpack("<HHHHB", b[pos:pos + 9])
        pos += 9
        assert not fl & 0x80, "local colour tables not supported by this reader"
        min_size = b[pos]
        pos += 1
        data = bytearray()
        while b[pos]:
            data += b[pos + 1:pos + 1 + b[pos]]
            pos += 1 + b[pos]
        pos += 1
        idx = np.frombuffer(_lzw_decode(bytes(data), min_size, fw * fh), np.uint8)
        assert idx.size == fw * fh, (idx.size, fw * fh)
        canvas = canvas.copy()
        canvas[y:y + fh, x:x + fw] = gct[idx.reshape(fh, fw)]
        frames.append(canvas)
        delays.append(delay)
    return frames, delays, loops

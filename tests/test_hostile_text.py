"""Hostile input, second round (issue 24): timeline and prompts files. UTF-8 with or without a byte-order mark is
read; anything else is one line naming the file and the line, the same in the CLI and Blender's batch. A timeline
has the service's segment cap, and a length like 10**400 is refused, not an OverflowError. Real subprocesses on the
tiny model, each bounded in time."""
import os
import subprocess
import sys

import numpy as np

from conftest import ROOT
from motionmill_common.protocol import MAX_PROMPTS
from serve_helpers import tiny_model

PY = sys.executable
JUNK = bytes(range(128, 256)) * 3     # no UTF-8 sequence starts with 0x80


def run(module, *args, timeout=60):   # a bound on a hang, not a speed test: a loaded 2-core CI machine needs more than 9 s to generate
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([PY, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def error_line(p, status):
    assert p.returncode == status and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0].removeprefix("error: ")


def generate(*args):
    return run("backend", "generate", "--model-dir", tiny_model(), "--device", "cpu", "--quiet", *args)


def binary_timeline(tmp_path):
    timeline = tmp_path / "timeline.txt"
    timeline.write_bytes(b"2 a person walks\n" + JUNK + b"\n")
    return timeline, f"timeline {timeline}, line 2: not UTF-8 text (byte 0x80); save it as UTF-8"


def test_a_binary_timeline_is_one_line_naming_file_and_line_in_the_cli(tmp_path):
    timeline, line = binary_timeline(tmp_path)
    assert error_line(generate("--timeline", timeline, "--out", tmp_path / "out"), 2) == line


def test_binary_timeline_and_prompts_files_are_the_clis_line_in_the_batch(tmp_path):
    timeline, cli = binary_timeline(tmp_path)
    blend = tmp_path / "in.blend"
    blend.write_bytes(b"BLENDER-v300")   # refused later, by Blender: the text files are read before any work
    batch = run("blender_addon.batch", "--blend", blend, "--rig", "Armature", "--timeline", timeline,
                "--out", tmp_path / "out.blend")
    assert error_line(batch, 1) == cli
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(JUNK)
    batch = run("blender_addon.batch", "--blend", blend, "--rig", "Armature", "--prompts", prompts,
                "--out", tmp_path / "out.blend")
    assert error_line(batch, 1) == f"prompts file {prompts}, line 1: not UTF-8 text (byte 0x80); save it as UTF-8"


def test_a_timeline_with_a_byte_order_mark_is_read(tmp_path):
    timeline = tmp_path / "timeline.txt"
    timeline.write_bytes("\ufeff1 a person walks\n".encode("utf-8"))
    p = generate("--timeline", timeline, "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "out" / "000.npz")["rotations"].shape[0] == 30


def test_a_timeline_is_capped_at_the_services_segment_count(tmp_path):
    timeline = tmp_path / "timeline.txt"
    timeline.write_text("0.1 a person walks\n" * (MAX_PROMPTS + 44))
    line = error_line(generate("--timeline", timeline, "--out", tmp_path / "out"), 2)
    assert line == f"{timeline}: 1 to {MAX_PROMPTS} timeline segments, got {MAX_PROMPTS + 44}"
    assert not (tmp_path / "out").exists()

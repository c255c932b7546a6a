"""What the bpy benchmarks (tests/bench_keys.py, tests/bench_retarget.py) start with: their --out, one CPU core (so
their figures compare across machines), the real AMASS clip and the MotionMillion generations."""
import argparse
import glob
import os

import numpy as np

from conftest import DATA
from retarget.motion import Motion


def start():
    """(args, the AMASS clip as a Motion, the generations' *_predict.bvh paths, sorted)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="update this markdown file's section (docs/benchmarks.md); default: print it")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    d = np.load(DATA / "motion272" / "amass_000000_motion.npz")
    amass = Motion(d["rotations"], d["translation"], float(d["fps"]))
    return args, amass, sorted(glob.glob(str(DATA / "bvh" / "*_predict.bvh")))

#!/usr/bin/env python3
"""MotionMill's one set-up command.

    python install.py            # .venv with the backend's libraries (CUDA torch where an NVIDIA GPU is found)
    python install.py --dev      # plus pytest, hypothesis and bpy, for the test suite

Standard library only: it runs before anything is installed. Re-running is safe and fast: pip skips what is
already there at the pinned versions.
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")

# Versions tested together (see README, "The libraries it stands on").
TORCH = "torch==2.13.0"
RUNTIME = ["transformers==5.23.0", "accelerate==1.15.0", "bitsandbytes==0.50.2", "safetensors==0.8.0",
           "numpy==1.26.4", "PyWavelets==1.9.0", "smplx==0.1.28", "tqdm>=4.66"]
DEV = ["pytest==9.2.0", "hypothesis==6.170.15", "bpy==5.0.1"]
# Oldest driver CUDA version the pinned torch's CUDA wheels run on.
MIN_DRIVER_CUDA = (12, 6)


class InstallError(Exception):
    """A failure the user can act on; printed as one line."""


def say(message):
    print(f"[install] {message}", flush=True)


def venv_python(venv_dir=VENV):
    return os.path.join(venv_dir, "Scripts" if os.name == "nt" else "bin", "python.exe" if os.name == "nt" else "python")


def detect_gpu(run=subprocess.run):
    """(gpu name, driver CUDA version tuple) from nvidia-smi, or None where there is no NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None and run is subprocess.run:
        return None
    try:
        out = run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out.stdout)
    try:
        names = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        name = names.stdout.strip().splitlines()[0] if names.returncode == 0 and names.stdout.strip() else "NVIDIA GPU"
    except (OSError, subprocess.TimeoutExpired):
        name = "NVIDIA GPU"
    return name, (int(cuda.group(1)), int(cuda.group(2))) if cuda else None


def check_python():
    if sys.version_info[:2] != (3, 11):
        raise InstallError(f"Python {platform.python_version()} found; MotionMill needs Python 3.11 "
                           "(Blender's own version): run this with python3.11")


def make_venv():
    py = venv_python()
    if os.path.exists(py):
        say(f"using existing {os.path.relpath(VENV, ROOT)}")
        return py
    say(f"creating {os.path.relpath(VENV, ROOT)}")
    venv.EnvBuilder(with_pip=True).create(VENV)
    return py


def pip_install(py, packages, extra_args=()):
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check", *extra_args, *packages]
    say("pip install " + " ".join(packages))
    if subprocess.run(cmd).returncode != 0:
        raise InstallError(f"pip could not install {' '.join(packages)}; check your network connection and re-run "
                           "`python install.py` (finished packages are kept)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", action="store_true", help="also install pytest, hypothesis and bpy for the tests")
    ap.add_argument("--cpu", action="store_true", help="install CPU torch even where a GPU is found")
    a = ap.parse_args(argv)
    try:
        check_python()
        gpu = None if a.cpu else detect_gpu()
        if gpu:
            name, cuda = gpu
            say(f"NVIDIA GPU: {name}, driver CUDA {'.'.join(map(str, cuda)) if cuda else 'unknown'}")
            if cuda and cuda < MIN_DRIVER_CUDA:
                raise InstallError(f"the NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}, torch needs "
                                   f"{MIN_DRIVER_CUDA[0]}.{MIN_DRIVER_CUDA[1]} or newer: update the driver, or re-run with --cpu")
        else:
            say("no NVIDIA GPU found: installing CPU torch (generation with 3B/7B models will be slow)")
        py = make_venv()
        pip_install(py, [TORCH])
        pip_install(py, RUNTIME)
        if a.dev:
            pip_install(py, DEV)
        say("done. Check the set-up with: " + os.path.relpath(py, ROOT) + " -m backend doctor")
        return 0
    except InstallError as err:
        print(f"[install] error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

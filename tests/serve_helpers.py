"""Shared helpers for the service tests: a real `backend serve` subprocess on the tiny conformance model."""
import os
import sys

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT))
from blender_addon.client import BackendClient  # noqa: E402


def tiny_model():
    return shared_path("conformance", "motionmillion-tiny", "model")


def start_client(*extra_args, cwd=ROOT, **kwargs):
    """A service on the tiny model on the CPU, started in `cwd` (relative paths in requests are read from there); it
    imports the project from this checkout wherever it runs."""
    return BackendClient(sys.executable, cwd=str(cwd), pythonpath=str(ROOT) if cwd != ROOT else None,
                         model_dir=tiny_model(), device="cpu", extra_args=list(extra_args), **kwargs)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
    return True

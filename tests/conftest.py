"""Shared test set-up.

Two environment variables matter when the tests run under a Python other than the repo's .venv:

MOTIONMILL_SHARED          the folder of real test data (default: ../shared beside this checkout).
MOTIONMILL_TEST_PYTHON     the Python the add-on tests start the backend with (BACKEND_PYTHON below). It needs
                           torch, the bpy tests' own Python does not: .ci/run runs the tests marked `bpy` again
                           under bpy 4.2 and 4.5 LTS from .venv-bpy42/45 (bpy, numpy, pytest, hypothesis only),
                           and the backend they start is still .venv's. Default: .venv/bin/python of this checkout, else
                           ../main/.venv/bin/python (a git worktree beside the main checkout), else sys.executable.

Tests marked `bpy` use real bpy (the module): on top of the full suite on bpy 5.0.1 (install.py --dev), .ci/run
runs `pytest -m bpy` on the files holding them under bpy 4.2 and 4.5 LTS, so mark every new test that uses bpy.
"""
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MOTIONMILL_SHARED", ROOT.parent / "shared"))
CONFORMANCE = SHARED / "conformance" / "motionmillion-tiny"
DATA = SHARED / "data"


def _backend_python():
    for p in (ROOT / ".venv" / "bin" / "python", ROOT.parent / "main" / ".venv" / "bin" / "python"):
        if p.exists():
            return str(p)
    return sys.executable


BACKEND_PYTHON = os.environ.get("MOTIONMILL_TEST_PYTHON") or _backend_python()


def run_batch(args, timeout=180):
    """`python -m blender_addon.batch ARGS` as a pipeline runs it: a real subprocess with this Python (it has bpy)."""
    import subprocess
    return subprocess.run([sys.executable, "-m", "blender_addon.batch"] + [str(a) for a in args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def shared_path(*parts):
    """A file under ../shared, or skip the test with the reason when it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data missing: {p}")
    return p


@pytest.fixture(autouse=True, scope="session")
def isolated_user_folders(tmp_path_factory):
    """Tests never read or write the developer's own MotionMill settings and data (an installed copy elsewhere
    would otherwise be the add-on's backend)."""
    root = tmp_path_factory.mktemp("motionmill-user")
    saved = {k: os.environ.get(k) for k in ("MOTIONMILL_CONFIG", "MOTIONMILL_DATA", "MOTIONMILL_MODEL_DIR")}
    os.environ["MOTIONMILL_CONFIG"] = str(root / "config.json")
    os.environ["MOTIONMILL_DATA"] = str(root / "data")
    os.environ.pop("MOTIONMILL_MODEL_DIR", None)
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# Blender 4.2 and 4.3's bpy module segfault at interpreter exit once their bundled rigify add-on has been enabled
# (tests/rigs.py builds the Rigify metarig); disabling it again does not help, 4.4+ is fine. So under those
# versions the process ends with pytest's own status right after its report, before Blender's exit code runs.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    bpy = sys.modules.get("bpy")
    if bpy is not None and tuple(bpy.app.version) < (4, 4, 0) and _EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()

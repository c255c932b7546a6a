import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MOTIONMILL_SHARED", ROOT.parent / "shared"))
CONFORMANCE = SHARED / "conformance" / "motionmillion-tiny"
DATA = SHARED / "data"


def shared_path(*parts):
    """A file under ../shared, or skip the test with the reason when it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data missing: {p}")
    return p

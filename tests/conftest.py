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

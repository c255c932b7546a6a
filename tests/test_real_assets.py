"""The real-asset corpus (tests/data/real/) through the product, judged by tests/real_assets.py: every character
others made takes the real AMASS capture through the headless batch, with and without foot cleanup, and every BVH
convention goes onto a test rig, within the limits, or is refused with one line naming what is missing.

On bpy 5.0 every asset is judged; the older LTS passes (.ci/run) judge OLD_BPY_SUBSET."""
import pytest

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy

import real_assets  # noqa: E402  (tests/real_assets.py)

OLD_BPY_SUBSET = {"khronos_cesiumman.glb", "cmu_motionbuilder_35_22.bvh", "bandai_namco_dataset2_walk.bvh",
                  "second_life_qavimator_jump.avm.bvh"}
CHARACTERS = [e for e in real_assets.manifest("characters")]
BVH = [e for e in real_assets.manifest("bvh")]
if bpy.app.version < (5, 0, 0):
    CHARACTERS = [e for e in CHARACTERS if e["file"] in OLD_BPY_SUBSET]
    BVH = [e for e in BVH if e["file"] in OLD_BPY_SUBSET]
# refusals the report card lists with their reason: an asset here must be refused, with one line, not mis-retargeted
REFUSED = {
    "perception_neuron_pn_pro.bvh": "a skeleton template: Frames: 0, no motion",
    "gdquest_mini_sophia.glb": "eight root bones and three arm chains (DEF, IK, FK), all deforming: no pelvis found",
    "godot_platformer_robot.glb": "a robot without hands: its arms end at the forearms, so no wrist",
    "robot_expressive.blend": "its feet are IK targets at the root, not below the shins, and its hands are fanned palms",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("real-assets")


@pytest.fixture(scope="module")
def capture(folder):
    return real_assets.capture(folder)


def _judged(verdicts):
    for v in verdicts:
        print(v.line())
        if v.asset in REFUSED:
            assert v.refused, f"{v.asset} was expected to be refused ({REFUSED[v.asset]}), and was not"
            assert "\n" not in v.refused
            continue
        assert not v.refused, f"{v.asset} ({v.mode}) refused: {v.refused}"
        assert v.ok, v.line()


@pytest.mark.skipif(not CHARACTERS, reason="no character corpus in tests/data/real/characters")
@pytest.mark.parametrize("entry", CHARACTERS, ids=[e["file"] for e in CHARACTERS])
def test_character_takes_the_real_capture_through_the_batch(entry, folder, capture):
    _judged(real_assets.judge_character(bpy, entry, folder, *capture))


@pytest.mark.skipif(not BVH, reason="no BVH corpus in tests/data/real/bvh")
@pytest.mark.parametrize("entry", BVH, ids=[e["file"] for e in BVH])
def test_bvh_convention_matches_blenders_own_import(entry, folder):
    _judged([real_assets.judge_bvh(bpy, entry, folder)])

"""Long motions on the tiny real-format model: continuing real captures without a visible seam, prompt
timelines of the requested length decoded as one stream, and their CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest

from backend import cli
from backend.long_motion import decode_stream, generate_long, load_source, parse_timeline, read_timeline
from backend.sampling import SamplingOptions
from models.loader import load_model
from retarget.bvh import read_bvh
from retarget.continuation import as_smpl22, ordinary_steps, seam
from retarget.motion import Motion, MotionError
from tests.conftest import shared_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURES = [("motion272", "amass_000000_motion.npz"), ("amass", "amass_test_smplh.npz"),
            ("bvh", "motionmillion_case1_0_predict.bvh"), ("motion272", "amass_000000.npy")]


@pytest.fixture(scope="module")
def model_dir():
    return shared_path("conformance", "motionmillion-tiny", "model")


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir, device="cpu", dtype="float32", quant="none")


def seam_ratios(source, continuation):
    """Pelvis step and worst joint rotation change at the join, each over the capture's own 95th-percentile step."""
    pelvis, rotation = seam(source, continuation)
    p95_pelvis, p95_rotation = ordinary_steps(source)
    return pelvis / p95_pelvis, float(rotation.max()) / p95_rotation


@pytest.mark.parametrize("folder,name", CAPTURES)
def test_continuing_a_real_capture_joins_it_without_a_visible_seam(model, folder, name):
    source = load_source(shared_path("data", folder, name))
    clip = generate_long(model, [(2.0, "a person walks forward")], SamplingOptions(), source=source)
    assert clip.motion.num_frames == 60 and len(clip.tokens) == 30     # only the new frames
    assert len(clip.info["prefix_tokens"]) == 45                       # the last 3 s of the input
    pelvis, rotation = seam_ratios(source, clip.motion)
    assert pelvis <= 3 and rotation <= 3, f"seam: pelvis {pelvis:.2f}x, rotation {rotation:.2f}x the capture's p95 step"
    # the new motion carries on from where the input ends, not from the origin
    assert np.linalg.norm(clip.motion.translation[0] - source.translation[-1]) < 0.2


def test_without_the_cross_fade_the_join_jumps(model):
    """The seam test can fail: the same continuation without the fade turns joints by many ordinary steps."""
    source = load_source(shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh"))
    clip = generate_long(model, [(2.0, "a person walks forward")], SamplingOptions(), source=source, fade_frames=0)
    assert seam_ratios(source, clip.motion)[1] > 3


@pytest.mark.parametrize("fade_frames", [None, 10])
def test_a_continuation_that_starts_far_from_the_pose_is_eased_in_at_the_captures_pace(fade_frames):
    """A model output whose first frame is far from the input's last pose (here the capture's later frames with the
    spine, neck, shoulders and knees turned 60-90 degrees): the join and every frame of the fade stay within 3x the
    capture's own 95th-percentile step with the fade as long as the gap needs; a fixed 10-frame fade jumps."""
    from retarget.continuation import frame_steps, place_continuation
    from retarget.rotations import axis_angle_to_matrix
    source = load_source(shared_path("data", "motion272", "amass_000000_motion.npz"))
    prefix = 45
    later = Motion(source.rotations[300:405].copy(), source.translation[300:405].copy(), source.fps)
    turn = axis_angle_to_matrix(np.array([[0, 0, 1.5], [1.0, 0, 0], [0, 1.2, 0.4], [0.9, 0.3, 0]]))
    for joint, r in zip((3, 12, 16, 4), turn):        # spine1, neck, left shoulder, left knee: far from the input
        later.rotations[:, joint] = r @ later.rotations[:, joint]
    placed = place_continuation(later, prefix, source, floor=0.0, fade_frames=fade_frames)
    p95_pelvis, p95_rotation = ordinary_steps(source)
    joined = Motion(np.concatenate([source.rotations[-1:], placed.rotations]),
                    np.concatenate([source.translation[-1:], placed.translation]), source.fps)
    pelvis, rotation = frame_steps(joined)
    worst = float(rotation[:40].max()) / p95_rotation          # the join and the fade's frames
    print(f"fade {fade_frames}: worst step over the join {worst:.2f}x the capture's p95")
    if fade_frames is None:
        assert worst <= 3 and float(pelvis[:40].max()) / p95_pelvis <= 3
    else:
        assert worst > 3


def test_a_timeline_is_one_stream_of_the_requested_length(model):
    segments = [(1.0, "a person walks forward"), (2.3, "a person jumps"), (0.7, "a person waves")]
    clip = generate_long(model, segments, SamplingOptions())
    for (seconds, _), start, end in zip(segments, clip.info["segment_starts"],
                                        list(clip.info["segment_starts"][1:]) + [clip.motion.num_frames]):
        assert abs((end - start) - seconds * 30) <= 2
    assert list(clip.info["segment_prompts"]) == [p for _, p in segments]
    np.testing.assert_allclose(clip.features, decode_stream(model, clip.tokens.tolist()))   # decoded in one piece
    # each segment continued the stream: its first tokens differ from the same prompt generated alone
    alone = generate_long(model, segments[1:2], SamplingOptions())
    assert clip.tokens[30:64].tolist() != alone.tokens.tolist()


def test_sixty_second_timeline_from_the_command_line(model_dir, tmp_path):
    timeline = tmp_path / "timeline.txt"
    prompts = ["a person walks forward", "a person turns around", "a person jumps", "a person sits down"]
    timeline.write_text("# twelve segments\n" + "".join(f"5 {prompts[i % 4]}\n" for i in range(12)))
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-m", "backend", "generate", "--model-dir", str(model_dir), "--timeline",
                          str(timeline), "--out", str(tmp_path / "out"), "--quiet"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with np.load(tmp_path / "out" / "000.npz") as d:
        assert d["rotations"].shape[0] == 1800
        assert d["segment_starts"].tolist() == list(range(0, 1800, 150))
        assert len(d["segment_prompts"]) == 12 and d["tokens"].shape == (900,)


def test_continue_from_the_command_line_and_one_line_errors(model_dir, tmp_path, capsys):
    env = dict(os.environ, PYTHONPATH=ROOT)
    base = [sys.executable, "-m", "backend", "generate", "--model-dir", str(model_dir), "--out", str(tmp_path), "--quiet"]
    src = str(shared_path("data", "motion272", "amass_000000_motion.npz"))
    run = subprocess.run(base + ["--continue-from", src, "--prompt", "a person sits down", "--seconds", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with np.load(tmp_path / "000.npz") as d:
        assert d["rotations"].shape[0] == 30 and d["prefix_tokens"].shape == (45,)
    bad = tmp_path / "bad.txt"
    bad.write_text("five a person walks\n")
    for extra, message in ((["--timeline", str(bad)], "expected `SECONDS PROMPT`"),
                           (["--timeline", str(bad), "--prompt", "x"], "--timeline holds the prompts"),
                           (["--timeline", str(bad), "--seconds", "2"], "each segment its seconds"),
                           (["--continue-from", str(bad), "--prompt", "x"], "unrecognised motion file")):
        assert cli.main(base[3:] + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_timeline_files_and_requests_are_checked(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("\n# intro\n5 a person walks forward\n2.5s a person waves\n")
    assert read_timeline(str(f)) == [(5.0, "a person walks forward"), (2.5, "a person waves")]
    assert parse_timeline([{"seconds": 3, "prompt": "a jump"}]) == [(3.0, "a jump")]
    for bad, message in (([], "no segments"), ([{"seconds": -1, "prompt": "a"}], "positive"),
                         ([{"seconds": 2, "prompt": " "}], "no prompt"), ([{"seconds": True, "prompt": "a"}], "positive"),
                         ([{"seconds": 4, "prompt": "a"}, {"seconds": 12, "prompt": "b"}], "segment 2 is 12 s, longer than the 10 s")):
        with pytest.raises(ValueError, match=message):
            parse_timeline(bad)


def test_only_smpl_skeletons_are_continued():
    motion = read_bvh(shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh"))
    assert as_smpl22(motion).rotations.shape[1:] == (22, 3, 3)   # the palms are dropped
    other = Motion(motion.rotations, motion.translation, motion.fps, tuple(f"bone{i}" for i in range(len(motion.joint_names))),
                   motion.parents, motion.offsets)
    with pytest.raises(MotionError, match="SMPL-22 skeleton"):
        as_smpl22(other, "rig.bvh")


def test_the_service_takes_timelines_and_continuations_with_the_clis_result(model, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from serve_helpers import start_client
    src = str(shared_path("data", "bvh", "motionmillion_case1_0_predict.bvh"))
    timeline = [{"seconds": 1, "prompt": "a person walks forward"}, {"seconds": 0.6, "prompt": "a person jumps"}]
    with start_client() as c:
        r1 = c.generate(out=tmp_path, timeline=timeline, name="tl")
        r2 = c.generate(prompt="a person sits down", out=tmp_path, continue_from=src, seconds=1, name="cont")
        bad = c.generate(prompt="x", out=tmp_path, timeline=timeline)
        results = [c.wait(r, timeout=120) for r in (r1, r2)]
        refused = c.wait(bad, timeout=60, raise_errors=False)
    assert refused["event"] == "error" and "timeline" in refused["message"]
    want_tl = generate_long(model, parse_timeline(timeline), SamplingOptions())
    want_cont = generate_long(model, [(None, "a person sits down")], SamplingOptions(min_tokens=15, max_tokens=15),
                              source=load_source(src))
    for result, want in zip(results, (want_tl, want_cont)):
        with np.load(result["paths"][0]) as d:
            assert np.array_equal(d["tokens"], want.tokens)
            np.testing.assert_allclose(d["translation"], want.motion.translation, atol=1e-5)
            assert d["segment_starts"].tolist() == want.info["segment_starts"].tolist()
    assert results[0]["clips"][0]["segment_starts"] == [0, 30]

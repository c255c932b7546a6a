"""The panel's progress text, from the service's events (blender_addon.session needs no bpy)."""
from blender_addon.session import Job


def events(job, *evs):
    for ev in evs:
        job._event({"id": "r1", **ev})
    return job.status, round(job.progress, 3)


def test_phases_read_as_words_and_percentages(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("blender_addon.session.time.monotonic", lambda: clock[0])
    job = Job(None, "r1", status="starting the backend…")
    assert events(job, {"event": "progress", "phase": "queued", "position": 3}) == ("waiting for 2 earlier requests…", 0.0)
    assert events(job, {"event": "progress", "phase": "loading motion decoder"})[0] == "loading the model (first time only)…"
    assert events(job, {"event": "progress", "phase": "encoding"})[0] == "reading the prompt…"
    # a batch of 3 clips decoded one pass at a time: the second pass, half way
    status, progress = events(job, {"event": "progress", "phase": "decoding", "step": 75, "total": 150, "clips": 3,
                                    "clips_done": 1})
    assert status == "generating 50% · clip 2 of 3" and progress == 0.5
    clock[0] += 4.0   # 4 s for another sixth of the work: 12 s for the half left
    status, _ = events(job, {"event": "progress", "phase": "decoding", "step": 150, "total": 150, "clips": 3,
                             "clips_done": 1})
    assert status == "generating 66% · clip 2 of 3 · about 8 s left"
    assert events(job, {"event": "progress", "phase": "writing"})[0] == "writing the clip…"
    assert events(job, {"event": "result", "final": True}) == ("retargeting…", 0.95)


def test_one_clip_says_no_clip_count():
    job = Job(None, "r1")
    assert events(job, {"event": "progress", "phase": "decoding", "step": 30, "total": 150})[0] == "generating 20%"


def _drive(client, rid):
    """Feed a real request's events to the panel's Job; (fractions, statuses) it showed, in order."""
    job = Job(None, rid)
    shown = []

    def on_event(ev):
        job._event(ev)
        shown.append((job.progress, job.status))
    client.wait(rid, timeout=300, on_event=on_event)
    return [p for p, _ in shown], [s for _, s in shown]


def test_a_batch_and_a_timeline_from_the_service_report_progress_that_only_rises(tmp_path):
    """The real service on the tiny model: a batch of 3 prompts (decoded together) reads 'clips 1-3 of 3' up to the
    whole batch's 100%, a 3-segment timeline 'segment k of 3'; the fraction shown never goes back."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from serve_helpers import start_client
    with start_client() as c:
        batch = c.generate(prompts=["a person waves", "a person jumps", "a person sits down"], out=tmp_path / "b",
                           seconds=2, seed=1)
        fractions, statuses = _drive(c, batch)
        timeline = c.generate(timeline=[{"seconds": 1.0, "prompt": "a person walks forward"},
                                        {"seconds": 1.0, "prompt": "a person jumps"},
                                        {"seconds": 1.0, "prompt": "a person waves"}], out=tmp_path / "t", seed=1)
        t_fractions, t_statuses = _drive(c, timeline)
    for f in (fractions, t_fractions):
        assert all(b >= a for a, b in zip(f, f[1:])), f
    decoding = [s for s in statuses if s.startswith("generating ")]
    assert decoding and all("of 3" in s for s in decoding), decoding
    assert max(fractions) >= 0.9 and any("generating 100%" in s for s in decoding), decoding
    segments = [s for s in t_statuses if "segment" in s]
    assert {f"segment {k} of 3" for k in (1, 2, 3)} <= {s.split(" · ")[1] for s in segments}, segments
    assert "loading the model (first time only)…" in statuses        # the first request loads the model

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

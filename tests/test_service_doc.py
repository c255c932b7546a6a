"""docs/service.md, checked against a real `python -m backend serve` on the tiny conformance model: its example
session gets the events the page shows, in that order, and leaves the clips it names; a file read to its end
cancels what it queued, as the page says; its examples of clip names are the names the service gives."""
import json
import os
import re
import subprocess

import numpy as np

from conftest import ROOT
from serve_helpers import start_client, tiny_model

DOC = ROOT / "docs" / "service.md"
# Fields whose values differ from run to run (or from release to release): only their presence is compared.
VOLATILE = ("pid", "version", "timing", "uptime_s", "memory")


def doc_block(marker, lang="jsonl"):
    """The lines of the ```LANG block right after `<!-- MARKER -->` in docs/service.md."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```{lang}\n(.*?)\n```", text, re.S)
    assert m, f"docs/service.md: no ```{lang} block right after <!-- {marker} -->"
    return m.group(1).splitlines()


def between_steps(event):
    """A `decoding` progress event between a pass's first and last step: sent by the clock (at most every 0.25 s),
    so how many there are depends on the machine; the page leaves them out."""
    return event.get("event") == "progress" and event.get("phase") == "decoding" and event["step"] not in (1, event["total"])


def comparable(value, folder):
    """`value` with the volatile fields' values blanked and paths inside `folder` made relative to it."""
    if isinstance(value, dict):
        return {k: "(varies)" if k in VOLATILE else comparable(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v, folder) for v in value]
    if isinstance(value, str) and value.startswith(folder + "/"):
        return "<out>/" + value[len(folder) + 1:]
    return value


def replay(lines, cwd):
    """Send each request line to a service started in `cwd`, the next one once the last has had its final event, as
    the page tells a user to; every event that comes back, in order, and the service's exit status."""
    events = []
    with start_client(cwd=cwd) as client:
        for line in lines:
            rid = json.loads(line)["id"]
            client.proc.stdin.write(line.encode("utf-8") + b"\n")
            client.proc.stdin.flush()
            events.append(client.wait(rid, timeout=120, on_event=events.append, raise_errors=False))
        rc = client.proc.wait(30)           # the session ends with a shutdown
        stray = [e for e in client.poll() if e.get("event") != "exit"]
    assert stray == [], f"events for no request of the session: {stray}"
    return events, rc


def test_the_example_session_answers_as_the_page_shows(tmp_path):
    requests = doc_block("example session: requests")
    shown = [json.loads(line) for line in doc_block("example session: events")]
    outs = {json.loads(line).get("out") for line in requests} - {None}
    assert len(outs) == 1, f"the example's generate requests should share one 'out' folder, got {outs}"
    out = outs.pop()
    assert not os.path.isabs(out), "the example's 'out' must be relative: the service's working directory holds it"
    assert not any(between_steps(e) for e in shown), "the page says it leaves out the decoding events between steps"
    shown_clips = [e for e in shown if e["event"] == "clip"]
    assert shown_clips, "the example session shows no clip"
    shown_folder = os.path.dirname(shown_clips[0]["path"])
    assert shown_folder.endswith("/" + out)

    got, rc = replay(requests, tmp_path)
    folder = str(tmp_path / out)
    got = [e for e in got if not between_steps(e)]
    assert [(e["id"], e["event"]) for e in got] == [(e["id"], e["event"]) for e in shown]
    for want, have in zip(shown, got):
        assert comparable(have, folder) == comparable(want, shown_folder)
    assert rc == 0

    # the clips the page names are on disk, and nothing else (no temp file) is
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(e["path"]) for e in shown_clips)
    for e in shown_clips:
        with np.load(os.path.join(folder, os.path.basename(e["path"]))) as clip:
            assert clip["rotations"].shape == (e["frames"], 22, 3, 3)
            assert clip["translation"].shape == (e["frames"], 3)
            assert len(clip["tokens"]) == e["tokens"] and str(clip["prompt"]) == e["prompt"]
            assert int(clip["seed"]) == e["seed"] and int(clip["variation"]) == e["variation"]


def test_a_file_read_to_its_end_cancels_what_it_queued(tmp_path):
    """The page's `serve < requests.jsonl`, the file holding the example's first three lines: the end of the file
    cancels g1, with the events shown."""
    commands = doc_block("end of input: the commands", "bash")
    start, end = commands.index("cat > requests.jsonl <<'EOF'"), commands.index("EOF")
    lines = commands[start + 1:end]
    assert lines == doc_block("example session: requests")[:3]
    assert commands[end + 1:] == [".venv/bin/python -m backend serve --device cpu < requests.jsonl"]
    shown = [json.loads(line) for line in doc_block("end of input: g1's events")]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    client = start_client(cwd=tmp_path, start=False)        # its command line and environment, not its pipes
    with open(tmp_path / "requests.jsonl", "rb") as stdin:
        run = subprocess.run(client.argv, stdin=stdin, cwd=tmp_path, env=client.env, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e for e in events if e["id"] == "g1"] == shown
    assert not list(tmp_path.rglob("*.npz"))


def test_the_pages_clip_names_are_the_services(tmp_path):
    """The examples in 'Clips: names and folder' (`"id": X` gives `NAME_000.npz`), as the service names them."""
    from backend.service_queue import Service
    text = DOC.read_text(encoding="utf-8")
    examples = re.findall(r'`"id": ([^`]+)` gives `([^`]+)_000\.npz`', text)
    assert len(examples) >= 3, "the page's examples of clip names are gone"

    class Client:
        def send(self, event):
            pass

    service = Service(str(tiny_model()), device="cpu")           # not started: nothing is loaded or decoded
    for rid_json, name in examples:
        rid = json.loads(rid_json)
        service.submit_generate({"id": rid, "op": "generate", "prompt": "a person walks", "seconds": 1,
                                 "out": str(tmp_path)}, Client())
        assert service.queue[-1].name == name, rid


def test_the_readme_links_the_page():
    assert "](docs/service.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_option_error_code_and_limit_is_on_the_page():
    """What the page must keep up with: every `serve` option, every error code the service can send, and every limit
    constant of the protocol and the service, with its value in the same table row."""
    import argparse

    from backend import cli, generation, serve
    from motionmill_common import protocol
    text = DOC.read_text(encoding="utf-8")

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for a in sub.choices["serve"]._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert [o for o in options if f"`{o}" not in text] == []

    sources = "".join((ROOT / f).read_text(encoding="utf-8") for f in
                      ("backend/serve.py", "backend/service_queue.py", "motionmill_common/protocol.py"))
    codes = set(re.findall(r'RequestError\(\s*"([a-z_]+)"', sources) + re.findall(r'\.fail\(\s*"([a-z_]+)"', sources)
                + re.findall(r'error_event\([^,()]+,\s*"([a-z_]+)"', sources))
    assert {"bad_request", "cancelled", "unauthorized"} <= codes  # the patterns still find them
    assert sorted(c for c in codes if f"| `{c}` |" not in text) == []

    table = text[text.index("\n## Limits\n"):]
    limits = [(m, n) for m in (protocol, serve) for n in vars(m) if n.startswith(("MAX_", "MIN_"))
              or n.endswith("_TIMEOUT_S") or n == "OUTBOX_EVENTS"] + [(generation, "MAX_SECONDS")]
    for module, name in limits:
        rows = [line for line in table.splitlines() if line.startswith("|") and f"`{name}`" in line]
        assert rows, f"{module.__name__}.{name} is not in the page's limits table"
        value = getattr(module, name)
        if abs(value) < 10 ** 9:        # the largest are written as powers (2⁶³−1, 10⁹)
            shown = {f"{value:,}", f"{value:g}", str(value)}
            assert any(s in re.split(r"[\s|();]+", rows[0]) for s in shown), (name, value, rows[0])

"""`python -m backend bench` runs end to end as a user runs it and writes its section; no timing is asserted."""
import re
import subprocess

from conftest import BACKEND_PYTHON, ROOT


def test_bench_writes_its_section_and_keeps_the_others(tmp_path):
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Keying\n\nkept as it is\n")
    r = subprocess.run([BACKEND_PYTHON, "-m", "backend", "bench", "--size", "cpu-mid", "--tokens", "3",
                        "--compare-batches", "1", "--batches", "1", "--timeline", "2", "--timeline-seconds", "0.4",
                        "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "## Keying\n\nkept as it is" in text
    section = text.split("## Decoder (cpu-mid, cpu)", 1)[1]
    # on the CPU: reference-style recompute, recompute on the packed weights, cached, speed-up, the cache alone
    assert re.search(r"^\| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \*\*[\d.]+×\*\* \| [\d.]+× \|$", section, re.M)
    assert "packed for oneDNN" in section
    # eager and compiled side by side (--compile on is the bench's default), with the compile time and token check
    assert "| batch | eager (dynamic cache), s | eager tokens/s | compiled (static cache), s |" in section
    assert re.search(r"^\| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+× \| 1\.00× \| [\d.]+ \| yes \|$", section, re.M)
    assert re.search(r"fastest plain streaming read measured in the same run\. At that speed 3 steps cannot take less than "
                     r"[\d.]+ s, so at batch 1 no cache can beat the recompute by more than [\d.]+×", section)
    timeline = text.split("## Timeline (cpu-mid, cpu)", 1)[1]
    assert "A 2 × 0.4 s timeline (0.8 s, 12 tokens" in timeline
    assert re.search(r"^\| timeline, one stream decoded as one motion \| [\d.]+ \| [\d.]+× \| [\d.]+× \|$", timeline, re.M)

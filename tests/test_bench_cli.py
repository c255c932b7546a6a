"""`python -m backend bench` runs end to end as a user runs it and writes its section; no timing is asserted."""
import re
import subprocess

from conftest import BACKEND_PYTHON, ROOT, shared_path


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


def test_bench_clip_makes_one_clip_end_to_end_through_the_loader(tmp_path):
    """`--sections clip`: a model directory in the release's layout is built, loaded by the product's loader, and one
    clip of exactly --clip-tokens tokens is made as `generate` makes it; each part is timed and they add up."""
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([BACKEND_PYTHON, "-m", "backend", "bench", "--sections", "clip", "--size", "tiny",
                        "--text-encoder", "tiny", "--clip-tokens", "12", "--compile", "off", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    section = out.read_text().split("## Clip end to end (tiny, tiny, cpu)", 1)[1]
    assert 'One 12-token clip (24 frames, 0.8 s) of "a zombie shuffles forward, then lunges"' in section
    assert "the 512-wide FSQ tokenizer; loaded by the product's loader, unquantised decoder weights" in section
    assert "eager decoding on a dynamic cache" in section
    seconds = {}
    for label, key in (("text encoding", "text"), ("decoding 12 tokens", "decode"),
                       ("FSQ decoding and SMPL recovery (24 frames)", "fsq")):
        m = re.search(rf"^\| {re.escape(label)}[^|]* \| ([\d.]+) \|$", section, re.M)
        assert m, label
        seconds[key] = float(m.group(1))
    total = float(re.search(r"^\| \*\*the clip end to end, as `generate` runs it\*\* \| \*\*([\d.]+)\*\* \|$",
                            section, re.M).group(1))
    rate = float(re.search(r"decoding 12 tokens \(([\d.]+) tokens/s\)", section).group(1))
    assert abs(12 / rate - seconds["decode"]) <= 0.0006        # the rate is the tokens over the decoding time
    assert 0 < seconds["decode"] <= total and seconds["text"] < total
    assert "memory on the GPU" not in section          # CUDA only


def test_bench_refuses_options_it_would_ignore(tmp_path):
    for args, message in ((["--model-dir", str(tmp_path)], "--model-dir is measured by the clip section alone"),
                          (["--sections", "clip,speed"], "--sections 'speed': not a bench section"),
                          (["--size", "9B"], "--size '9B': choose one of tiny, cpu-mid, 3B, 7B")):
        r = subprocess.run([BACKEND_PYTHON, "-m", "backend", "bench", *args, "--out", str(tmp_path / "b.md")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), r.stderr
        assert not (tmp_path / "b.md").exists()


def test_bench_clip_on_a_model_directory_measures_that_model(tmp_path):
    out = tmp_path / "benchmarks.md"
    model = shared_path("conformance", "motionmillion-tiny", "model")
    r = subprocess.run([BACKEND_PYTHON, "-m", "backend", "bench", "--sections", "clip", "--model-dir", str(model),
                        "--clip-tokens", "8", "--compile", "off", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    section = out.read_text().split("## Clip end to end (model, cpu)", 1)[1]
    assert f"One 8-token clip (16 frames, 0.5 s) of \"a zombie shuffles forward, then lunges\" end to end as " \
           f"`generate` makes it, on the model directory {model};" in section
    assert re.search(r"^\| \*\*the clip end to end, as `generate` runs it\*\* \| \*\*[\d.]+\*\* \|$", section, re.M)

"""tests/gpu/device_check.sh without a GPU: one line says so, the commands it would run are listed, exit 0, nothing
written; and the `cuda` tests are skipped with the reason."""
import os
import subprocess

from conftest import BACKEND_PYTHON, ROOT

SCRIPT = ROOT / "tests" / "gpu" / "device_check.sh"


def test_the_device_check_says_there_is_no_gpu_and_lists_what_it_would_run(tmp_path):
    out = tmp_path / "benchmarks.md"
    env = {**os.environ, "PYTHON": BACKEND_PYTHON, "CUDA_VISIBLE_DEVICES": "", "MOTIONMILL_BENCH_OUT": str(out)}
    p = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("device check: no CUDA GPU here") and "nothing was run" in lines[0]
    assert any("-m pytest" in line and "-m cuda tests/gpu" in line for line in lines[1:])
    assert any("-m backend bench --sections clip --size 7B --device cuda --compile on" in line for line in lines[1:])
    assert any("-m backend bench --sections decoder --size 7B --device cuda --compile on" in line for line in lines[1:])
    assert not out.exists()


def test_the_cuda_tests_are_skipped_with_the_reason_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([BACKEND_PYTHON, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/gpu"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:]
    assert "no CUDA GPU here" in p.stdout and " skipped" in p.stdout and "passed" not in p.stdout

#!/usr/bin/env bash
# The device check: everything MotionMill measures on a CUDA GPU, in one call, within 8 minutes on one H200.
#
#   tests/gpu/device_check.sh            (from anywhere; PYTHON=... picks the interpreter, default .venv's)
#
# 1. the tests marked `cuda` in tests/gpu/ (conformance prompts on CUDA fp32, NF4 vs bf16 logits, compiled vs eager
#    tokens, serve end to end, the 7B shapes loaded straight into NF4), each printing a `DEVICE` line of figures;
# 2. python -m backend bench --size 7B --device cuda --compile on: eager and compiled decoding of random 7B weights in
#    NF4 at batch 1, 4 and 16, and the decoder's peak VRAM.
# Figures go to docs/benchmarks.md: the bench writes its "Decoder (7B, cuda)" section, this script the "Device
# check (cuda)" section with the tests' DEVICE lines. Without a GPU it says so in one line, lists what it would
# run, and exits 0.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -z "${PYTHON:-}" ]; then
    for candidate in "$ROOT/.venv/bin/python" "$ROOT/../main/.venv/bin/python"; do
        if [ -x "$candidate" ]; then PYTHON="$candidate"; break; fi
    done
fi
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
OUT="${MOTIONMILL_BENCH_OUT:-docs/benchmarks.md}"
TESTS=("$PYTHON" -m pytest -q -rs -s -m cuda tests/gpu)
BENCH=("$PYTHON" -m backend bench --size 7B --device cuda --compile on --compare-batches 1 --out "$OUT")

GPU="$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)"
if [ -z "$GPU" ]; then
    echo "device check: no CUDA GPU here (torch.cuda.is_available() is False with $PYTHON); nothing was run. It would run:"
    echo "  ${TESTS[*]}    (time limit 200 s)"
    echo "  ${BENCH[*]}    (time limit 260 s)"
    echo "  and write their figures to $OUT"
    exit 0
fi

echo "device check on $GPU"
LOG="$(mktemp)"
START=$SECONDS
timeout 200 "${TESTS[@]}" 2>&1 | tee "$LOG"
TESTS_RC=${PIPESTATUS[0]}
timeout 260 "${BENCH[@]}"
BENCH_RC=$?
"$PYTHON" - "$OUT" "$LOG" "$GPU" "$TESTS_RC" "$BENCH_RC" "$((SECONDS - START))" <<'EOF'
import sys, time
from motionmill_common.bench_report import update_section
out, log, gpu, tests_rc, bench_rc, seconds = sys.argv[1:]
lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
figures = [line.split("DEVICE ", 1)[1] for line in lines if "DEVICE " in line]
summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line or " skipped" in line), "no summary")
body = [f"`tests/gpu/device_check.sh` on {gpu}, {time.strftime('%Y-%m-%d')}, {seconds} s in all. Tests marked `cuda`: "
        f"{summary.strip('= ')} (exit {tests_rc}); `python -m backend bench --size 7B --device cuda --compile on` exit "
        f"{bench_rc} (its figures: the \"Decoder (7B, cuda)\" section).", ""]
body += [f"- {f}" for f in figures] or ["- no figures were printed"]
update_section(out, "Device check (cuda)", "\n".join(body))
print(f"wrote {out}")
EOF
rm -f "$LOG"
[ "$TESTS_RC" = 0 ] && [ "$BENCH_RC" = 0 ]

#!/usr/bin/env bash
# The device check: everything MotionMill measures on a CUDA GPU, in one call, within 8 minutes on one H200.
#
#   tests/gpu/device_check.sh            (from anywhere; PYTHON=... picks the interpreter: default .venv's, else python3)
#
# On the device tool's GPU machine, which has torch but no bitsandbytes and cannot download, first run
# tests/gpu/prepare_device.sh here, then run(command="tests/gpu/device_check.sh", carry=[".devtmp"], timeout_s=560):
# the packed libraries go onto PYTHONPATH and the packed conformance fixture becomes MOTIONMILL_SHARED.
#
# 1. the tests marked `cuda` in tests/gpu/ (conformance prompts on CUDA fp32, NF4 vs bf16 logits, compiled vs eager
#    tokens, serve end to end, the 7B shapes loaded straight into NF4), each printing a `DEVICE` line of figures;
# 2. python -m backend bench --sections clip --size 7B: one 150-token clip end to end (flan-t5-xl-shaped encoder,
#    7B decoder in NF4, compiled, the release's FSQ tokenizer) and the GPU memory of each part and at the peak;
# 3. python -m backend bench --sections decoder --size 7B: eager and compiled decoding at batch 1, 4 and 16.
# The benches write their sections of docs/benchmarks.md (with the issue's goals, met or missed); this script
# writes the "Device check (cuda)" section with the tests' DEVICE lines. Where the device tool set $OUT, the
# benchmarks file and the whole log are copied there. Without a GPU it says so in one line, lists what it would
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
if [ -f .devtmp/site.tar.gz ]; then          # packed by tests/gpu/prepare_device.sh
    SITE="$(mktemp -d)"
    tar -xzf .devtmp/site.tar.gz -C "$SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${MOTIONMILL_SHARED:-}" ] && [ ! -d "$ROOT/../shared/conformance" ] && [ -d .devtmp/shared/conformance ]; then
    export MOTIONMILL_SHARED="$ROOT/.devtmp/shared"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_MD="${MOTIONMILL_BENCH_OUT:-docs/benchmarks.md}"
TESTS=("$PYTHON" -m pytest -q -rs -s -p no:cacheprovider -m cuda tests/gpu)
CLIP=("$PYTHON" -m backend bench --sections clip --size 7B --device cuda --compile on --out "$OUT_MD")
DECODER=("$PYTHON" -m backend bench --sections decoder --size 7B --device cuda --compile on --compare-batches none
         --out "$OUT_MD")
LIMITS=(140 190 150)       # seconds for each step, 480 in all; a step stopped by its limit leaves its printed figures in the log

GPU="$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)"
if [ -z "$GPU" ]; then
    echo "device check: no CUDA GPU here (torch.cuda.is_available() is False with $PYTHON); nothing was run. It would run:"
    echo "  ${TESTS[*]}    (time limit ${LIMITS[0]} s)"
    echo "  ${CLIP[*]}    (time limit ${LIMITS[1]} s)"
    echo "  ${DECODER[*]}    (time limit ${LIMITS[2]} s)"
    echo "  and write their figures to $OUT_MD"
    exit 0
fi

echo "device check on $GPU with $("$PYTHON" -c 'import sys, torch, transformers, bitsandbytes as b
print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, bitsandbytes {b.__version__}")' 2>&1 | tail -1)"
LOG="$(mktemp)"
START=$SECONDS
timeout "${LIMITS[0]}" "${TESTS[@]}" 2>&1 | tee "$LOG"
TESTS_RC=${PIPESTATUS[0]}
timeout "${LIMITS[1]}" "${CLIP[@]}" 2>&1 | tee -a "$LOG"
CLIP_RC=${PIPESTATUS[0]}
timeout "${LIMITS[2]}" "${DECODER[@]}" 2>&1 | tee -a "$LOG"
DECODER_RC=${PIPESTATUS[0]}
"$PYTHON" - "$OUT_MD" "$LOG" "$GPU" "$TESTS_RC" "$CLIP_RC" "$DECODER_RC" "$((SECONDS - START))" <<'EOF'
import sys, time
from motionmill_common.bench_report import update_section
out, log, gpu, tests_rc, clip_rc, decoder_rc, seconds = sys.argv[1:]
lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
figures = [line.split("DEVICE ", 1)[1] for line in lines if "DEVICE " in line]
summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line or " skipped" in line), "no summary")
rc = lambda code: "exit 0" if code == "0" else f"exit {code}" + (" (its time limit)" if code == "124" else "")
body = [f"`tests/gpu/device_check.sh` on {gpu}, {time.strftime('%Y-%m-%d')}, {seconds} s in all. Tests marked `cuda`: "
        f"{summary.strip('= ')} ({rc(tests_rc)}); `python -m backend bench --sections clip --size 7B` {rc(clip_rc)} "
        f"(its figures: the \"Clip end to end (7B, flan-t5-xl, cuda)\" section); `python -m backend bench --sections "
        f"decoder --size 7B` {rc(decoder_rc)} (the \"Decoder (7B, cuda)\" section).", ""]
body += [f"- {f}" for f in figures] or ["- no figures were printed"]
update_section(out, "Device check (cuda)", "\n".join(body))
print(f"wrote {out}")
EOF
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    cp "$OUT_MD" "$OUT/benchmarks.md"
    cp "$LOG" "$OUT/device_check.log"
fi
rm -f "$LOG"
[ "$TESTS_RC" = 0 ] && [ "$CLIP_RC" = 0 ] && [ "$DECODER_RC" = 0 ]

#!/usr/bin/env bash
# Packs, here (where PyPI is reachable), what the GPU machine lacks for tests/gpu/device_check.sh, into .devtmp/
# (ignored by git). That machine has Python 3.12 with torch, transformers, accelerate, safetensors, sentencepiece and
# pytest, but no bitsandbytes, and it cannot download; ../shared beside this checkout does not travel with it.
#
#   tests/gpu/prepare_device.sh
#   then, through the device tool: run(command="tests/gpu/device_check.sh", carry=[".devtmp"], timeout_s=560)
#
# .devtmp/site.tar.gz   bitsandbytes (its CUDA 13 and CPU kernels only) and transformers, at the versions .venv
#                       has, for Python 3.12; device_check.sh unpacks it onto PYTHONPATH
# .devtmp/shared/       a copy of ../shared/conformance, the fixture the cuda tests read (MOTIONMILL_SHARED)
# Together about 40 MB: with the checkout, under the 64 MiB the tool carries.
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV_PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
SHARED="${MOTIONMILL_SHARED:-$ROOT/../shared}"
version() { "$VENV_PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))"; }
BNB="$(version bitsandbytes)"
TRANSFORMERS="$(version transformers)"

rm -rf .devtmp
mkdir -p .devtmp/site .devtmp/shared
"$VENV_PYTHON" -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --target .devtmp/site "bitsandbytes==$BNB" "transformers==$TRANSFORMERS"
# torch there is built for CUDA 13: the kernels for older CUDA and for ROCm and XPU would only add 150 MB
find .devtmp/site/bitsandbytes -maxdepth 1 -name 'libbitsandbytes_*.so' \
    ! -name 'libbitsandbytes_cpu.so' ! -name 'libbitsandbytes_cuda13*.so' -delete
tar -czf .devtmp/site.tar.gz -C .devtmp/site .
rm -rf .devtmp/site
cp -r "$SHARED/conformance" .devtmp/shared/conformance
echo "packed bitsandbytes $BNB and transformers $TRANSFORMERS ($(du -h .devtmp/site.tar.gz | cut -f1)) and the conformance" \
     "fixture ($(du -sh .devtmp/shared | cut -f1)) into .devtmp/: carry it to the device check"
# what travels: the checkout's tracked and untracked-not-ignored files, and .devtmp
TRAVELS=$(( $( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- | tail -1 | cut -f1) \
            + $(du -sb .devtmp | cut -f1) ))
echo "with the checkout: $((TRAVELS / 1048576)) MiB of the device tool's 64 MiB"
[ "$TRAVELS" -lt $((64 * 1048576)) ] || { echo "too large to travel: leave out what is not needed" >&2; exit 1; }

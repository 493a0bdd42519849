#!/usr/bin/env bash
# The GPU checks of the "decode on the GPU at GPU speed" work, as one call on a lent CUDA machine
# (which has torch, numba, scipy, typer, rich, safetensors and scikit-image, but not PyAV,
# zstandard or constriction). Prepare here, run there, restore here:
#
#   scripts/device_tree.sh wheels && scripts/device_tree.sh slim    # here: wheels in, weights out
#   device run: bash scripts/device_check.sh   (carry [".whl"], timeout_s 540)
#   scripts/device_tree.sh restore                                   # here, before any commit
#
# Writes to $OUT (or /tmp/device_check): speed.log (bench/speed.py --device cuda at 360p, 720p and
# 1080p, default settings only: network, coder and whole-path frames/s), speed_compile.log (the same at 360p with
# --compile), token_threads.log (bench/token_threads.py: 1080p token decode in 1, 4 and 8 coder
# threads), tests.log (the pipeline, CLI, parallel-decode and training-kit tests on CUDA) and env.log. Each
# step has its own time limit, so one that hangs leaves time for the rest. A dry run here, on the
# CPU and without wheels: DEVICE=cpu SIZES=360 PY=.venv/bin/python scripts/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/device_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKCODEC_NO_REEXEC=1
PY="${PY:-python3}" DEVICE="${DEVICE:-cuda}" SIZES="${SIZES:-360,720,1080}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/env.log"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
{ nvidia-smi -L; "$PY" -c 'import torch, av, zstandard, numba; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "av", av.__version__, "numba", numba.__version__)'; } > "$OUT/env.log" 2>&1
cat "$OUT/env.log"
timeout 170 "$PY" bench/speed.py --device "$DEVICE" --sizes "$SIZES" --no-x265 --frames 68 --repeats 2 --main-only \
  > "$OUT/speed.log" 2>&1
echo "speed: exit $?"; tail -12 "$OUT/speed.log"
timeout 110 "$PY" bench/speed.py --device "$DEVICE" --no-x265 --frames 68 --sizes 360 --compile --main-only \
  > "$OUT/speed_compile.log" 2>&1
echo "speed --compile: exit $?"; tail -5 "$OUT/speed_compile.log"
timeout 60 "$PY" bench/token_threads.py --threads 1,4,8 --repeat 2 > "$OUT/token_threads.log" 2>&1
echo "token threads: exit $?"; tail -4 "$OUT/token_threads.log"
timeout 160 "$PY" -m pytest -q -p no:cacheprovider tests/test_pipeline.py tests/test_parallel.py tests/test_cli.py \
  tests/test_device.py tests/test_train_kit.py > "$OUT/tests.log" 2>&1
echo "tests: exit $?"; tail -15 "$OUT/tests.log"

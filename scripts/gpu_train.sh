#!/usr/bin/env bash
# One training run on a CUDA machine, start to finish, with nothing to install beyond torch,
# numpy, safetensors, scikit-image and scikit-learn (no PyAV: real data comes as a training pack).
#
#   scripts/gpu_train.sh CONFIG MINUTES [--data PACK] [--dry-run] [--device cuda:1]
#
# Trains for MINUTES (exports included), then writes to $OUT (default runs/gpu_out) the fp16 EMA
# and raw weights (parts of at most 16 MiB), metrics.jsonl, train_config.json and summary.json
# (validation of both exports). --dry-run runs the same script on the CPU with small batches.
# Make the pack first, where PyAV is installed:  python -m tokcodec.train.pack data/real data/pack
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3)}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
"$PY" -c "import torch, numpy, safetensors, skimage, sklearn, PIL" 2>/dev/null || {
    echo "gpu_train.sh: $PY lacks one of torch, numpy, safetensors, scikit-image, scikit-learn, Pillow" >&2
    exit 1
}
config=$1 minutes=$2
shift 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m tokcodec.train.kit --config "$config" --minutes "$minutes" --out "${OUT:-runs/gpu_out}" "$@"

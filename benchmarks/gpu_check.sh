#!/usr/bin/env bash
# The GPU path (issue 14): ml2d, ml3d and vae on CUDA vs CPU on a small simulated set
# (see benchmarks/gpu_check.py for the columns). On a GPU machine:
#   benchmarks/gpu_check.sh                 # CPU vs cuda, table + --out CSV/JSON
# Without one (self-check of the comparison, CPU vs CPU, must give ARI 1.0, corr ~1):
#   OMP_NUM_THREADS=1 benchmarks/gpu_check.sh --cpu-only --n 100
# Other options go to gpu_check.py (--preset, --n, --box, --n-iter, --epochs, --out ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x $HERE/../.venv/bin/python ]]; then PY=$HERE/../.venv/bin/python; else PY=python3; fi
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PY" "$HERE/gpu_check.py" --threads "$OMP_NUM_THREADS" "$@"

#!/bin/bash
# the lane-1 ladder runs of run_further.sh again (the first attempt's method registry was not loaded)
cd /work/main
while pgrep -f "null1.py 0.05 0.3" > /dev/null; do sleep 20; done
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap12c/src
P=.venv/bin/python
$P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.05 0.05 300 0 further > benchmarks/results/heldout_like/twelfth_session/further_ladder_m05_s005_n300_seed0.log 2>&1

#!/bin/bash
# 1,000-particle cells of the ladder (oracle + ml2d), code at 77f47be run from a worktree
# (PYTHONPATH) so that src could change meanwhile
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_n1000_s8
cell() { # name mass snr n
  OMP_NUM_THREADS=1 PYTHONPATH=/work/wt8/src .venv/bin/tomohet --threads 1 bench --ladder --methods oracle,ml2d --ladder-mass $2 --ladder-snr $3 --ladder-n $4 --out $O/$1 > $O/$1.log 2>&1
}
cell a_m30_s002_n1000 0.3 0.02 1000
cell b_m02_s03_n1000 0.02 0.3 1000
cell c_m05_s01_n1000 0.05 0.1 1000

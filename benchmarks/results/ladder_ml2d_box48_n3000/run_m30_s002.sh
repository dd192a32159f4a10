#!/bin/bash
# the 3,000-particle cell 30% / 18%, SNR 0.02 (oracle + ml2d), eighth session, code 77f47be
# (numerics; via a worktree)
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_n3000/m30_s002
OMP_NUM_THREADS=1 PYTHONPATH=/work/wt8/src .venv/bin/tomohet --threads 1 bench --ladder --methods oracle,ml2d \
  --ladder-mass 0.3 --ladder-snr 0.02 --ladder-n 3000 --out $O > $O.log 2>&1

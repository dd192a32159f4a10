#!/bin/bash
# the first 3,000-particle ladder cell (issue 12): oracle and ml2d, 5% / 3%, SNR 0.05
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_n3000
OMP_NUM_THREADS=1 nice -n 5 .venv/bin/tomohet --threads 1 bench --ladder --methods oracle,ml2d \
  --ladder-mass 0.05 --ladder-snr 0.05 --ladder-n 3000 --out $O > $O/run.log 2>&1

#!/bin/bash
# ladder cells (oracle + ml2d) with the held-out test against the split's own mean
# usage: run_ladder.sh SRC NAME MASS SNR N SEED
cd /work/main
O=benchmarks/results/heldout_like/ladder_ownmean
mkdir -p $O
OMP_NUM_THREADS=1 PYTHONPATH=$1 .venv/bin/tomohet --threads 1 bench --ladder --methods oracle,ml2d \
  --ladder-mass $3 --ladder-snr $4 --ladder-n $5 --seed $6 --out $O/$2 > $O/$2.log 2>&1

#!/usr/bin/env bash
# Discrete classification benchmark (issue 4/5 figures): discrete and mixed presets at
# SNR 0.1 (easy) and 0.02 (realistic), every discrete method vs the oracle.
# N particles (default 600) and box 32 keep it to about an hour on 2 shared CPU cores;
# the presets' full size is 2000 particles (drop the --set options for that).
set -euo pipefail
N=${N:-600}
OUT=${OUT:-benchmarks/results/discrete_n${N}}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
tomohet --threads "$OMP_NUM_THREADS" bench --preset discrete-easy --preset discrete-realistic \
    --set n_particles="$N" --set box=32 --methods ml2d,occupancy,ml3d,shc --param shc.n_runs=5 \
    --param ml2d.n_iter=15 --param ml3d.n_iter=15 --param occupancy.n_iter=15 \
    --out "$OUT/discrete"
tomohet --threads "$OMP_NUM_THREADS" bench --preset mixed-easy --preset mixed-realistic \
    --set n_particles="$N" --methods ml2d,occupancy,ml3d \
    --param ml2d.n_iter=15 --param ml3d.n_iter=15 --param occupancy.n_iter=15 \
    --out "$OUT/mixed"

#!/usr/bin/env bash
# Discrete classification benchmark (issue 4/5 figures): every discrete method vs the
# oracle on the discrete (and mixed) presets at SNR 0.1 (easy) and 0.02 (realistic).
# N particles (default 300) and box 32 keep each command under ~30 min on one shared CPU
# core; the presets' full size is 2000 particles at box 48 (drop the --set options).
set -euo pipefail
N=${N:-300}
OUT=${OUT:-benchmarks/results/discrete_n${N}}
WHAT=${1:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { tomohet --threads "$OMP_NUM_THREADS" bench --set n_particles="$N" "$@"; }
if [[ $WHAT == all || $WHAT == ml ]]; then
    run --preset discrete-easy --preset discrete-realistic --set box=32 \
        --methods ml2d,occupancy,ml3d --param ml2d.n_iter=15 --param ml3d.n_iter=15 \
        --param occupancy.n_iter=15 --out "$OUT/discrete_ml"
fi
if [[ $WHAT == all || $WHAT == shc ]]; then
    run --preset discrete-easy --preset discrete-realistic --set box=32 --methods shc \
        --param shc.n_runs=5 --param shc.n_iter=8 --param shc.anneal_iters=3 \
        --out "$OUT/discrete_shc"
fi
if [[ $WHAT == all || $WHAT == mixed ]]; then
    run --preset mixed-easy --preset mixed-realistic --methods ml2d,occupancy,ml3d \
        --out "$OUT/mixed_ml"
fi

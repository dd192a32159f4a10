#!/bin/bash
# fifteenth session: ladder cells with discovery's start-agreement rule for further
# regions (tomohet.methods.regions), from a snapshot of the session's code
# (TAG=b: snap15b, the redraw kept out of earlier regions as redrawn)
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=${SNAP:-/work/snap15a}/src
R=benchmarks/results/ladder_regions_s15
cell() { # MASS SNR N DIR
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d \
    --ladder-mass $1 --ladder-snr $2 --ladder-n $3 --out $R/$4 > $R/$4.log 2>&1
}
for spec in "$@"; do
  IFS=: read m s n <<< "$spec"
  cell $m $s $n ${TAG:-}n${n}_m${m}_s${s}
done

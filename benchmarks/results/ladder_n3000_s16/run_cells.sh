#!/bin/bash
# sixteenth session: 3,000-particle ladder cells, ml2d with the bench parameters,
# from a snapshot of a552301's src (/work/snap16)
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=${SNAP:-/work/snap16}/src
R=benchmarks/results/ladder_n3000_s16
cell() { # MASS SNR N DIR
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d \
    --ladder-mass $1 --ladder-snr $2 --ladder-n $3 --out $R/$4 > $R/$4.log 2>&1
}
for spec in "$@"; do
  IFS=: read m s n <<< "$spec"
  cell $m $s $n n${n}_m${m}_s${s}
done

#!/bin/bash
# thirteenth session: 1,000-particle cells not measured before (same snapshot); a, b, c ran
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap13/src
R=benchmarks/results/ladder_ml2d_box48_s13
cell() { # MASS SNR DIR
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d \
    --ladder-mass $1 --ladder-snr $2 --ladder-n 1000 --out $R/$3 > $R/$3.log 2>&1
}
case "$1" in
  a) cell 0.3 0.05 n1000_m30_s005 ;;
  b) cell 0.1 0.1 n1000_m10_s01 ;;
  c) cell 0.05 0.3 n1000_m05_s03 ;;
esac

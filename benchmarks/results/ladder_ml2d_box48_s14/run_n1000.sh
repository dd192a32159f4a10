#!/bin/bash
# fourteenth session: the 1,000-particle cells with an oracle >= 0.4 not measured before
# (snapshot of the session code in /work/snap14c/src); d and e in parallel; f crashed there
# (an empty region, fixed in da20c73) and was rerun with SNAP=/work/snap14d
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=${SNAP:-/work/snap14c}/src
R=benchmarks/results/ladder_ml2d_box48_s14
cell() { # MASS SNR DIR
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d \
    --ladder-mass $1 --ladder-snr $2 --ladder-n 1000 --out $R/$3 > $R/$3.log 2>&1
}
case "$1" in
  d) cell 0.1 0.3 n1000_m10_s03 ;;
  e) cell 0.3 0.3 n1000_m30_s03 ;;
  f) cell 0.3 0.1 n1000_m30_s01 ;;
esac

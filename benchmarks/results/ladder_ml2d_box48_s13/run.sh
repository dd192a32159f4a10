#!/bin/bash
# thirteenth session: the whole 300-particle ladder with the current code (snapshot of
# 0e3dad6 in /work/snap13/src), two lanes on the 2 cores, then merged (resumable cells)
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap13/src
R=benchmarks/results/ladder_ml2d_box48_s13
lane() { # SNRS DIR
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d \
    --ladder-mass 0.02,0.05,0.1,0.3 --ladder-snr $1 --ladder-n 300 --out $R/$2 > $R/$2.log 2>&1
}
lane 0.3,0.1 lane_a &
lane 0.05,0.02 lane_b &
wait
mkdir -p $R/all/ladder_cells && cp $R/lane_a/ladder_cells/*.json $R/lane_b/ladder_cells/*.json $R/all/ladder_cells/
.venv/bin/tomohet --threads 1 bench --ladder --methods ml2d --ladder-mass 0.02,0.05,0.1,0.3 \
  --ladder-snr 0.3,0.1,0.05,0.02 --ladder-n 300 --out $R/all > $R/all.log 2>&1

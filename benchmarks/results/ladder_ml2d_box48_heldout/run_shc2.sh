#!/bin/bash
# shc (region by region, held-out test of further regions), oracle rows reused
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_heldout
cell() { # name mass snr n source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json; d=json.load(open('$5')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$5'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 .venv/bin/tomohet --threads 1 bench --ladder --methods shc --ladder-mass $2 --ladder-snr $3 --ladder-n $4 --out $O/$1 > $O/$1.log 2>&1
}
R=benchmarks/results
[ "$1" = 1 ] && cell shc_b_m05_s005_n300 0.05 0.05 300 $R/ladder_ml2d_box48_final/snr0.05/ladder_cells/ladder-m05-snr0.05-n300.json
[ "$1" = 2 ] && cell shc_g_m05_s005_n500 0.05 0.05 500 $R/ladder_ml2d_box48_confirm/g/ladder_cells/ladder-m05-snr0.05-n500.json

#!/bin/bash
# shc on the two hardest 300-particle cells with region masks redrawn from their splits; oracle rows reused
cd /work/main
O=benchmarks/results/ladder_shc_box48_redraw
R=benchmarks/results
cell() { # name mass snr n source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json,sys; d=json.load(open('$5')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$5'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 .venv/bin/tomohet --threads 1 bench --ladder --methods shc --ladder-mass $2 --ladder-snr $3 --ladder-n $4 --out $O/$1 > $O/$1.log 2>&1
}
lane1() {
  cell b_m05_s005_n300 0.05 0.05 300 $R/ladder_ml2d_box48_final/snr0.05/ladder_cells/ladder-m05-snr0.05-n300.json
}
lane2() {
  cell d_m30_s002_n300 0.3 0.02 300 $R/ladder_ml2d_box48_confirm/d/ladder_cells/ladder-m30-snr0.02-n300.json
}
lane$1

#!/bin/bash
# ladder cells with region masks redrawn from their splits (methods/region_refine); oracle rows reused
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_redraw
R=benchmarks/results
cell() { # name mass snr n source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json,sys; d=json.load(open('$5')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$5'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 .venv/bin/tomohet --threads 1 bench --ladder --methods ml2d --ladder-mass $2 --ladder-snr $3 --ladder-n $4 --out $O/$1 > $O/$1.log 2>&1
}
lane1() {
  cell d_m30_s002_n300 0.3 0.02 300 $R/ladder_ml2d_box48_confirm/d/ladder_cells/ladder-m30-snr0.02-n300.json
  cell b_m05_s005_n300 0.05 0.05 300 $R/ladder_ml2d_box48_final/snr0.05/ladder_cells/ladder-m05-snr0.05-n300.json
  cell h_m05_s01_n300 0.05 0.1 300 $R/ladder_ml2d_box48_confirm/h/ladder_cells/ladder-m05-snr0.1-n300.json
  cell f_m10_s005_n300 0.1 0.05 300 $R/ladder_ml2d_box48_confirm/f/ladder_cells/ladder-m10-snr0.05-n300.json
}
lane2() {
  cell g_m05_s005_n500 0.05 0.05 500 $R/ladder_ml2d_box48_confirm/g/ladder_cells/ladder-m05-snr0.05-n500.json
  cell e_m02_s03_n300 0.02 0.3 300 $R/ladder_oracle_box48/ladder_cells/ladder-m02-snr0.3-n300.json
  cell a_m05_s03_n300 0.05 0.3 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.3-n300.json
  cell c_m10_s03_n300 0.1 0.3 300 $R/ladder_oracle_box48/ladder_cells/ladder-m10-snr0.3-n300.json
}
lane3() {
  cell i_m30_s005_n300 0.3 0.05 300 $R/ladder_ml2d_box48_final/snr0.05/ladder_cells/ladder-m30-snr0.05-n300.json
  cell j_m10_s01_n300 0.1 0.1 300 $R/ladder_ml2d_box48_final/snr0.1/ladder_cells/ladder-m10-snr0.1-n300.json
  cell k_m30_s01_n300 0.3 0.1 300 $R/ladder_ml2d_box48_final/snr0.1/ladder_cells/ladder-m30-snr0.1-n300.json
  cell l_m30_s03_n300 0.3 0.3 300 $R/ladder_ml2d_box48_final/snr0.3/ladder_cells/ladder-m30-snr0.3-n300.json
}
lane$1

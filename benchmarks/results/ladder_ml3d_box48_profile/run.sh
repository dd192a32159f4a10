#!/bin/bash
# ml3d on the ladder with the subtomograms noise profile (eleventh session) (code 0a60ae5 + pooled budget (noise profile), run from a
# worktree via PYTHONPATH); oracle rows reused
cd /work/main
O=benchmarks/results/ladder_ml3d_box48_profile
R=benchmarks/results
cell() { # name mass snr n source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json,sys; d=json.load(open('$5')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$5'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 PYTHONPATH=/work/snap11c/src .venv/bin/tomohet --threads 1 bench --ladder --methods ml3d --ladder-mass $2 --ladder-snr $3 --ladder-n $4 --out $O/$1 > $O/$1.log 2>&1
}
cell a_m05_s03_n300 0.05 0.3 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.3-n300.json
cell c_m05_s005_n300 0.05 0.05 300 $R/ladder_ml2d_box48_final/snr0.05/ladder_cells/ladder-m05-snr0.05-n300.json
cell d_m30_s002_n300 0.3 0.02 300 $R/ladder_ml2d_box48_confirm/d/ladder_cells/ladder-m30-snr0.02-n300.json
cell e_m10_s005_n300 0.1 0.05 300 $R/ladder_ml2d_box48_confirm/f/ladder_cells/ladder-m10-snr0.05-n300.json

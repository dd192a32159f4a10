#!/bin/bash
# occupancy and ml3d on ladder cells (issue 12, sixth session); oracle rows reused
cd /work/main
O=benchmarks/results/ladder_occ_ml3d_box48
R=benchmarks/results
cell() { # name method mass snr n source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json,sys; d=json.load(open('$6')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$6'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/tomohet --threads 1 bench --ladder --methods $2 --ladder-mass $3 --ladder-snr $4 --ladder-n $5 --out $O/$1 > $O/$1.log 2>&1
}
[ -z "$1" ] && cell occ_m05_s03_n300 occupancy 0.05 0.3 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.3-n300.json
[ -z "$1" ] && cell occ_m05_s005_n300 occupancy 0.05 0.05 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.05-n300.json
[ -z "$1" ] && cell ml3d_m05_s005_n300 ml3d 0.05 0.05 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.05-n300.json
[ -z "$1" ] && cell ml3d_m30_s002_n300 ml3d 0.3 0.02 300 $R/ladder_ml2d_box48_confirm/d/ladder_cells/ladder-m30-snr0.02-n300.json
# shc on the two cells below the bar (added later in the session; run as `run.sh shc`)
[ "$1" = shc ] && cell shc_m30_s002_n300 shc 0.3 0.02 300 $R/ladder_ml2d_box48_confirm/d/ladder_cells/ladder-m30-snr0.02-n300.json &
[ "$1" = shc ] && cell shc_m05_s005_n300 shc 0.05 0.05 300 $R/ladder_oracle_box48/ladder_cells/ladder-m05-snr0.05-n300.json &
wait

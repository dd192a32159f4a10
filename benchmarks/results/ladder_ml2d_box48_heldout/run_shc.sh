#!/bin/bash
# shc (region by region, held-out test of further regions) on m02 SNR 0.3 N 300, oracle reused
cd /work/main
O=benchmarks/results/ladder_ml2d_box48_heldout
while pgrep -f "ladder-snr 0.05 --ladder-n 300" >/dev/null; do sleep 10; done
mkdir -p $O/shc_e_m02_s03_n300/ladder_cells
python3 -c "
import json; d=json.load(open('benchmarks/results/ladder_oracle_box48/ladder_cells/ladder-m02-snr0.3-n300.json')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/shc_e_m02_s03_n300/ladder_cells/ladder-m02-snr0.3-n300.json','w'), indent=1)"
OMP_NUM_THREADS=1 .venv/bin/tomohet --threads 1 bench --ladder --methods shc --ladder-mass 0.02 --ladder-snr 0.3 --ladder-n 300 --out $O/shc_e_m02_s03_n300 > $O/shc_e_m02_s03_n300.log 2>&1

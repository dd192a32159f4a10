#!/bin/bash
# continuous methods at SNR <= 0.1 (issue 12, item 3; sixth session): vae and wmdpca on the
# 10% / 6% cells, clustered by the bench's k-means with K = 4; oracle rows reused
cd /work/main
O=benchmarks/results/ladder_continuous_lowsnr_box48
R=benchmarks/results/ladder_ml2d_box48_final
cell() { # name method mass snr source_json
  mkdir -p $O/$1/ladder_cells
  python3 -c "
import json; d=json.load(open('$5')); d['results']={'oracle': d['results']['oracle']}; json.dump(d, open('$O/$1/ladder_cells/'+'$5'.split('/')[-1],'w'), indent=1)"
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/tomohet --threads 1 bench --ladder --methods $2 --ladder-mass $3 --ladder-snr $4 --ladder-n 300 --out $O/$1 > $O/$1.log 2>&1
}
cell vae_m10_s01 vae 0.1 0.1 $R/snr0.1/ladder_cells/ladder-m10-snr0.1-n300.json &
cell wmdpca_m10_s005 wmdpca 0.1 0.05 $R/snr0.05/ladder_cells/ladder-m10-snr0.05-n300.json &
wait

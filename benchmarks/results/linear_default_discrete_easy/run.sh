#!/bin/bash
# issue 12 item 3: does the discovered focus (wmdpca's default mask="auto") cost anything on
# whole-subunit states? discrete-easy (2,000 particles, box 48) with the default and with
# the old spherical mask, one thread each, both at once on the 2 cores
cd /work/main
O=benchmarks/results/linear_default_discrete_easy
OMP_NUM_THREADS=1 nice -n 5 .venv/bin/tomohet --threads 1 bench --preset discrete-easy --methods wmdpca \
  --no-report --out $O/auto > $O/auto.log 2>&1 &
OMP_NUM_THREADS=1 nice -n 5 .venv/bin/tomohet --threads 1 bench --preset discrete-easy --methods wmdpca \
  --param wmdpca.mask=sphere --no-report --out $O/sphere > $O/sphere.log 2>&1 &
wait

#!/bin/bash
# usage: run_ml3d.sh SRC SIMDIR STAR OUTNAME LOG : ml3d K=4 with the code at SRC, then scored
SRC=$1; SIM=$2; STAR=$3; OUT=$4; LOG=$5
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=$SRC
/usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 classify ml3d $STAR --k 4 --out $OUT --seed 0 --no-progress > $LOG 2>&1
.venv/bin/python benchmarks/results/heldout_like/diagnostics/score.py $SIM $OUT >> $LOG 2>&1
.venv/bin/python -c "import json;print('profile', json.load(open('$OUT/summary.json'))['discovery'].get('noise_profile'), 'dispersion', json.load(open('$OUT/summary.json'))['discovery'].get('noise_dispersion'))" >> $LOG 2>&1

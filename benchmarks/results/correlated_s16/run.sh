#!/bin/bash
# correlated-component cells: simulate from the configs, then oracle + ml2d (snapshot code)
cd /work/main
O=benchmarks/results/correlated_s16
S=/work/scratch/correlated_s16
mkdir -p $S
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=${SNAP:-/work/snap16}/src
[ -n "$CLS" ] || for c in "$@"; do
  [ -f $S/$c/truth.csv ] || .venv/bin/tomohet simulate --config $O/configs/$c.json \
      --formats relion5 --no-progress --out $S/$c > $O/$c.sim.log 2>&1
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 bench --data $S/$c \
      --methods ml2d --out $O/$c > $O/$c.log 2>&1
done
# classify (for the run's summary.json: which regions, tests, class splits): CLS=1 run.sh CELL
if [ -n "$CLS" ]; then for c in "$@"; do
  .venv/bin/tomohet --threads 1 classify ml2d $S/$c/particles_optimisation_set.star --k 4 \
      --out $S/cls_$c > $O/cls_$c.log 2>&1
done; fi

#!/bin/bash
# held-out-like cells: simulate from the configs, then oracle + ml2d (code run from a worktree)
# usage: run.sh LANE_CELLS...   e.g. run.sh g1-m05-snr0.3-n300 g2-m05-snr0.05-n500
cd /work/main
O=benchmarks/results/heldout_like
S=/work/scratch/heldout_like
mkdir -p $S
export OMP_NUM_THREADS=1 PYTHONPATH=/work/wt9/src
for c in "$@"; do
  if [[ $c == seed* ]]; then  # seedN: the standard ladder cell 5% / 3%, SNR 0.05, 300, seed N
    n=${c#seed}
    .venv/bin/tomohet --threads 1 bench --ladder --methods oracle,ml2d --ladder-mass 0.05 \
      --ladder-snr 0.05 --ladder-n 300 --seed $n --out $O/$c > $O/$c.log 2>&1
    continue
  fi
  [ -f $S/$c/truth.csv ] || .venv/bin/tomohet simulate --config $O/configs/$c.json --formats relion5 \
      --no-progress --out $S/$c > $O/$c.sim.log 2>&1
  /usr/bin/time -v .venv/bin/tomohet --threads 1 bench --data $S/$c --methods ml2d \
      --out $O/$c > $O/$c.log 2>&1
done

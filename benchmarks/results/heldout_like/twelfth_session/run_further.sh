#!/bin/bash
# twelfth session: further candidates over scales (code /work/snap12c/src); after run_scales.sh
cd /work/main
while pgrep -f run_scales.sh > /dev/null; do sleep 20; done
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap12c/src
P=.venv/bin/python
($P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.05 0.05 300 0 further > benchmarks/results/heldout_like/twelfth_session/further_ladder_m05_s005_n300_seed0.log 2>&1
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/null1.py 0.05 0.3 300 further > benchmarks/results/heldout_like/twelfth_session/further_null1_m05_s03_n300.log 2>&1
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.3 0.02 300 0 further > benchmarks/results/heldout_like/twelfth_session/further_ladder_m30_s002_n300_seed0.log 2>&1) &
( /usr/bin/time -f "%e s %M KB" $P benchmarks/results/heldout_like/twelfth_session/diagnostics/classify_further.py --threads 1 classify ml2d /work/scratch/heldout_like/g1-m05-snr0.05-n500/particles.star --k 4 --out /work/scratch/heldout_like/s12_2d_g1n500_further --seed 0 --no-progress > benchmarks/results/heldout_like/twelfth_session/further_ml2d_g1-m05-snr0.05-n500.log 2>&1
  $P benchmarks/results/heldout_like/diagnostics/score.py /work/scratch/heldout_like/g1-m05-snr0.05-n500 /work/scratch/heldout_like/s12_2d_g1n500_further >> benchmarks/results/heldout_like/twelfth_session/further_ml2d_g1-m05-snr0.05-n500.log 2>&1
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/null1.py 0.05 0.05 300 further > benchmarks/results/heldout_like/twelfth_session/further_null1_m05_s005_n300.log 2>&1) &
wait

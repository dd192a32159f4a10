#!/bin/bash
# twelfth session, code 060c945 (/work/snap12d/src): more held-out-like and ladder cells
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap12d/src
P=.venv/bin/python
run2d() { # STAR SIM OUT LOG
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 classify ml2d $1 --k 4 --out $3 --seed 0 --no-progress > $4 2>&1
  $P benchmarks/results/heldout_like/diagnostics/score.py $2 $3 >> $4 2>&1
}
(.venv/bin/tomohet --threads 1 simulate --config benchmarks/results/heldout_like/configs/g1-m05-snr0.05-n300.json --formats relion5 --out /work/scratch/heldout_like/g1-m05-snr0.05-n300 --no-progress > /dev/null 2>&1
 run2d /work/scratch/heldout_like/g1-m05-snr0.05-n300/particles.star /work/scratch/heldout_like/g1-m05-snr0.05-n300 /work/scratch/heldout_like/s12_2d_g1n300 benchmarks/results/heldout_like/twelfth_session/final_ml2d_g1-m05-snr0.05-n300.log
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.02 0.3 300 0 > benchmarks/results/heldout_like/twelfth_session/final_ladder_m02_s03_n300_seed0.log 2>&1
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.1 0.05 300 0 > benchmarks/results/heldout_like/twelfth_session/final_ladder_m10_s005_n300_seed0.log 2>&1) &
(.venv/bin/tomohet --threads 1 simulate --config benchmarks/results/heldout_like/configs/g1-m05-snr0.05-n500.json --subtomograms reconstructed --formats relion5 --out /work/scratch/heldout_like/g1-s005-n500-rec --no-progress > /dev/null 2>&1
 bash benchmarks/results/heldout_like/eleventh_session/diagnostics/run_ml3d.sh /work/snap12d/src /work/scratch/heldout_like/g1-s005-n500-rec /work/scratch/heldout_like/g1-s005-n500-rec/subtomograms/particles.star /work/scratch/heldout_like/s12_3d_g1n500_rec benchmarks/results/heldout_like/twelfth_session/final_ml3d_g1-m05-snr0.05-n500_rec.log
 $P benchmarks/results/heldout_like/twelfth_session/diagnostics/ladder_further.py 0.05 0.05 300 1 > benchmarks/results/heldout_like/twelfth_session/final_ladder_m05_s005_n300_seed1.log 2>&1) &
wait

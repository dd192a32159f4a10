#!/bin/bash
# twelfth session: candidates over scales (code in /work/snap12b/src); two lanes
cd /work/main
S=/work/scratch/heldout_like; D=benchmarks/results/heldout_like/twelfth_session
run2d() { # STAR SIM OUT LOG
  export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap12b/src
  /usr/bin/time -f "%e s %M KB" .venv/bin/tomohet --threads 1 classify ml2d $1 --k 4 --out $3 --seed 0 --no-progress > $4 2>&1
  .venv/bin/python benchmarks/results/heldout_like/diagnostics/score.py $2 $3 >> $4 2>&1
}
run3d() { bash benchmarks/results/heldout_like/eleventh_session/diagnostics/run_ml3d.sh /work/snap12b/src $2 $1 $3 $4; }
(run3d $S/g2-s005-n500-rec/subtomograms/particles.star $S/g2-s005-n500-rec $S/s12_3d_g2n500_rec $D/ml3d_g2-m05-snr0.05-n500_rec_scales.log
 run2d $S/g2-m05-snr0.05-n500/particles.star $S/g2-m05-snr0.05-n500 $S/s12_2d_g2n500 $D/ml2d_g2-m05-snr0.05-n500_scales.log
 run3d $S/null-s005-n500-rec/subtomograms/particles.star $S/null-s005-n500-rec $S/s12_3d_null_rec $D/ml3d_null-m05-snr0.05-n500_rec_scales.log) &
(run2d $S/g2-m05-snr0.05-n300/particles.star $S/g2-m05-snr0.05-n300 $S/s12_2d_g2n300 $D/ml2d_g2-m05-snr0.05-n300_scales.log
 run2d $S/null-s005-n500-rec/particles.star $S/null-s005-n500-rec $S/s12_2d_null $D/ml2d_null-m05-snr0.05-n500_scales.log
 run3d $S/g2-s005-n500-sub/subtomograms/particles.star $S/g2-s005-n500-sub $S/s12_3d_g2n500_sub $D/ml3d_g2-m05-snr0.05-n500_pseudo_scales.log) &
wait

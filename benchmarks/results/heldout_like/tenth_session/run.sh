#!/bin/bash
# tenth session: ladder cells rerun with the dispersion + peak cut (code aba32ca), one thread
# each; held-out-like cells: tomohet simulate --config ../configs/CELL.json --subtomograms,
# then tomohet classify ml3d|ml2d ... --k 4 --seed 0 and ../diagnostics/score.py
export OMP_NUM_THREADS=1
O=benchmarks/results/heldout_like/tenth_session
tomohet --threads 1 bench --ladder --methods ml2d --ladder-mass 0.3 --ladder-snr 0.05 --ladder-n 300 --out $O/ladder_peaks_a
tomohet --threads 1 bench --ladder --methods ml2d --ladder-mass 0.05 --ladder-snr 0.05 --ladder-n 300 --out $O/ladder_peaks_b
tomohet --threads 1 bench --ladder --methods ml3d --ladder-mass 0.05 --ladder-snr 0.05 --ladder-n 300 --out $O/ladder_peaks_c
tomohet --threads 1 bench --ladder --methods oracle,ml3d --ladder-mass 0.05 --ladder-snr 0.3 --ladder-n 300 --out $O/ladder_ml3d_disp

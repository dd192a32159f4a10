"""A ladder cell: ml2d with the bench parameters (K = 4), as the ladder runs it.
usage: ladder_further.py MASS SNR N SEED [further]"""
import sys
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score as ari

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.runner import resolve_methods, run_method

torch.set_num_threads(1)
mass, snr, n, seed = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# "further": kept for the logs' provenance; since 060c945 the default (no flag)
ds = simulate_cell(LadderCell(mass, snr, n), seed, {})
t0 = time.perf_counter()
resolve_methods("ml2d")
run = run_method("ml2d", ds, seed)  # the bench parameters, as the ladder runs it
print("error", run.error) if run.error else None
print("ARI", round(ari(ds.states, run.labels), 3), "classes used",
      np.unique(run.labels).tolist(), "wall", round(time.perf_counter() - t0))

"""Null check of the held-out region test: one component (ladder, 2 states), K = 4
(as the eleventh session's), optionally with the further candidates over scales.
usage: null1.py MASS SNR N [further]"""
import json
import sys
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score as ari

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.ml import ML2D

torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
# "further": kept for the logs' provenance; since 060c945 the default (no flag)
ds = simulate_cell(LadderCell(mass, snr, n, 1), 0, {})
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False).fit(ds.particles)
print("discovery", json.dumps(m.discovery_.summary()))
print("ARI vs 2 states", round(ari(ds.states, m.labels_), 3), "classes used",
      np.unique(m.labels_).tolist(), "wall", round(time.perf_counter() - t0))

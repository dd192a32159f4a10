"""The likelihood dispersion (tomohet.methods.dispersion) measured on a particle file.
usage: measure.py STAR [ml2d|ml3d]"""
import sys
import time

import numpy as np
import torch

from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.dispersion import estimate_dispersion
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D

torch.set_num_threads(1)
p = read_particles(sys.argv[1])
cls = ML3D if (len(sys.argv) > 2 and sys.argv[2] == "ml3d") else ML2D
m = cls(n_classes=2, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
eng = EMEngine(filtered, cfg, keep, ref_mask)
n = len(keep)
t0 = time.perf_counter()
cons = eng.volumes_from(eng.reconstruct_pass(np.ones((n, 1)), None, halves))[0][0]
noise = eng.noise_pass(cons[None], np.zeros(n, dtype=np.int64))
t1 = time.perf_counter()
wins = [None if w == "none" else float(w) for w in (sys.argv[4] if len(sys.argv) > 4 else "none").split(",")]
for res in [float(r) for r in (sys.argv[3] if len(sys.argv) > 3 else "4,8").split(",")]:
  for win in wins:
    c = estimate_dispersion(eng, cons, noise, resolution_px=res, window_px=win, n_fields=8)
    print(f"{type(p).__name__} n={n} resolution {res} px window {win}: dispersion {c:.3f} "
          f"(setup {t1 - t0:.0f} s, estimate {time.perf_counter() - t1:.0f} s)", flush=True)
    t1 = time.perf_counter()

"""Discovery only on a ladder cell: the measured dispersion, the regions, their peaks.
usage: ladder_disc.py MASS SNR N [nopeaks]"""
import sys

import numpy as np
import torch

import tomohet.methods.detection as det
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.discovery import discover_with
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D

torch.set_num_threads(1)
if len(sys.argv) > 4 and sys.argv[4] == "nopeaks":
    det.split_clusters = lambda z, lab, n, level, prominence=2.0: (lab, n)
ds = simulate_cell(LadderCell(float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])), 0, {})
p = ds.particles
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, m._config(torch.device("cpu")), keep, ref_mask)
setup = discover_with(plain, 4, "auto", "components", halves, 0)
d = setup.discovery
V = [v.numpy() for v in torch.as_tensor(ds.state_volumes)]
A = np.clip(V[0] - V[2], 0, None)
B = np.clip(V[0] - V[1], 0, None)
print("dispersion", plain.cfg.noise_dispersion, {k: d.summary()[k] for k in
      ("region", "max_z", "threshold", "n_regions", "n_candidates")})
for i, r in enumerate(d.regions):
    w = r.numpy()
    print(f"region {i}: frac {w.mean():.4f} A in {(w * A).sum() / A.sum():.2f} "
          f"B in {(w * B).sum() / B.sum():.2f}")
for i, (r, _, _) in enumerate(d.candidates):
    w = r.numpy()
    print(f"candidate {i}: frac {w.mean():.4f} A in {(w * A).sum() / A.sum():.2f} "
          f"B in {(w * B).sum() / B.sum():.2f}")

"""Where discovery's candidate regions (no variance-test region) lie against the true
components, with more candidates than the default 3.
usage: cand_sites.py SIM_DIR [N_CANDIDATES]"""
import glob
import sys

import numpy as np
import torch

from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles as load_particles
from tomohet.methods.discovery import discover_with
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D
import tomohet.methods.discovery as D
import mrcfile

torch.set_num_threads(1)
sim = sys.argv[1]
nc = int(sys.argv[2]) if len(sys.argv) > 2 else 6
star = [s for s in sorted(glob.glob(f"{sim}/*.star")) if "truth" not in s][0]
p = load_particles(star)
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
orig = D.discover
D.discover = lambda *a, **k: orig(*a, **{**k, "n_candidates": nc})
setup = discover_with(plain, 4, "auto", "components", halves, 0)
dsc = setup.discovery
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
A = vols[0] - vols[2]
B = vols[0] - vols[1]
print("region", dsc.region, "max_z", round(dsc.max_z, 2), "thr", round(dsc.threshold, 2))
for i, (mask, fold, lab) in enumerate(dsc.candidates):
    w = mask.numpy()
    fa = float((w * np.clip(A, 0, None)).sum() / np.clip(A, 0, None).sum())
    fb = float((w * np.clip(B, 0, None)).sum() / np.clip(B, 0, None).sum())
    print(f"cand {i}: frac box {w.mean():.4f}, A mass inside {fa:.2f}, B mass inside {fb:.2f}")

"""Per-particle residual power (against the true map, divided by the model's factor) of a
subtomogram set, by the classes of a classify output: do the false classes differ in
noise level? usage: resid_level.py STAR SIMDIR CLSOUT"""
import sys

import mrcfile
import numpy as np
import pandas as pd
import torch
from scipy.stats import mannwhitneyu
from tomohet.data.prepare import prepare_subtomo_batch
from tomohet.io import read_particles
from tomohet.physics.forward import model_transforms
from tomohet.physics.fourier import radial_shell_index
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)
star, sim, out = sys.argv[1:4]
parts = read_particles(star)
a = pd.read_csv(f"{out}/assignments.csv").set_index("particle").loc[list(parts.names)]
v = torch.as_tensor(mrcfile.read(f"{sim}/state_00.mrc").copy())
proj = VolumeProjector(v)
d = parts.optics.box
shell = radial_shell_index(d, 3)
lo_hi = [(1, 6), (7, 12), (13, 24)]
rows = []
for b in parts.batches(32):
    prep = prepare_subtomo_batch(b, parts.optics)
    r = (prep.data - model_transforms(proj, prep)[0] * prep.transfer).abs() ** 2
    for j in range(len(b.index)):
        m = prep.mask[j]
        rows.append([float(r[j][m & (shell >= lo) & (shell <= hi)].mean()) for lo, hi in lo_hi]
                    + [int(m.sum())])
x = np.array(rows)
y = a["class"].values
c = np.unique(y)
for i, (lo, hi) in enumerate(lo_hi + [("mask", "voxels")]):
    g = [x[y == k, i] for k in c]
    print(f"shells {lo}-{hi}: " + "  ".join(f"class {k}: {gi.mean():.4g}" for k, gi in zip(c, g)),
          f" p {mannwhitneyu(g[0], g[1]).pvalue:.2e}")

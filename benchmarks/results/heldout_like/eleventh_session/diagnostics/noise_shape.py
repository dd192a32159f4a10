"""Is the subtomograms' noise white within a shell, once the model's per-voxel factor
(premult_power) is divided out? Residuals against the TRUE state maps, per voxel, mean
over the particles of one tomogram; the CV within each shell against the CV that sampling
alone gives. usage: noise_shape.py SUBTOMO_STAR SIMDIR"""
import sys

import mrcfile
import numpy as np
import pandas as pd
import torch
from tomohet.data.prepare import prepare_subtomo_batch
from tomohet.io import read_particles
from tomohet.physics.forward import model_transforms
from tomohet.physics.fourier import radial_shell_index
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)
star, sim = sys.argv[1], sys.argv[2]
parts = read_particles(star)
truth = pd.read_csv(f"{sim}/truth.csv").set_index("name")
maps = torch.stack([torch.as_tensor(mrcfile.read(f"{sim}/state_{k:02d}.mrc").copy()) for k in range(4)])
proj = VolumeProjector(maps)
d = parts.optics.box
tomo = np.array(parts.tomo_names)
first = tomo == tomo[0]
s1 = torch.zeros(d, d, d // 2 + 1, dtype=torch.float64)
s2 = torch.zeros_like(s1)
cnt = torch.zeros_like(s1)
for batch in parts.batches(16):
    sel = first[batch.index]
    if not sel.any():
        continue
    prep = prepare_subtomo_batch(batch, parts.optics)
    st = torch.as_tensor(truth.loc[[parts.names[i] for i in batch.index], "state"].values)
    model = model_transforms(proj, prep)  # (K, B, D, D, Dh)
    pred = model[st, torch.arange(len(st))] * prep.transfer
    r = ((prep.data - pred).abs() ** 2 / prep.premult_power.clamp_min(1e-6)).double()
    m = prep.mask.double()
    r, m = r[torch.as_tensor(sel)], m[torch.as_tensor(sel)]
    s1 += (r * m).sum(0)
    s2 += (r * r * m).sum(0)
    cnt += m.sum(0)
shell = radial_shell_index(d, 3)
print("shell  voxels  mean_count  CV_within_shell  CV_expected(sampling)  p90/p10")
for s in range(2, d // 2, 2):
    sel = (shell == s) & (cnt > 20)
    if sel.sum() < 20:
        continue
    v = (s1[sel] / cnt[sel])
    cv = float(v.std() / v.mean())
    # sampling CV of a mean of n exponential-ish |r|^2 values: 1/sqrt(n)
    exp_cv = float((1 / cnt[sel].sqrt()).mean())
    q = np.quantile(v.numpy(), [0.1, 0.9])
    print(f"{s:5d} {int(sel.sum()):7d} {float(cnt[sel].mean()):10.1f} {cv:15.3f} {exp_cv:20.3f} {q[1]/q[0]:8.2f}")

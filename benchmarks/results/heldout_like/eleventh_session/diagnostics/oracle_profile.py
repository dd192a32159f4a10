"""Bayes classifier on subtomograms with the TRUE maps, under two noise models:
(a) tomohet's: sigma2 per shell x premult_power; (b) the same x an empirical per-voxel
profile P(k) per tomogram (mean residual power per voxel / its shell mean, measured on the
other half of the particles, so no particle's own noise is in its profile).
ARI of each, and d'^2 per particle pair. usage: oracle_profile.py SUBTOMO_STAR SIMDIR"""
import sys

import mrcfile
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score
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
shell = radial_shell_index(d, 3)
ns = d // 2 + 1
tomo = np.array(parts.tomo_names)
tomos = sorted(set(tomo))
half = np.arange(len(tomo)) % 2
states = truth.loc[list(parts.names), "state"].values
# pass 1: residual power per voxel, per (tomogram, half)
acc = {(t, h): [torch.zeros(d, d, ns, dtype=torch.float64), torch.zeros(d, d, ns, dtype=torch.float64)]
       for t in tomos for h in (0, 1)}
cache = []
for batch in parts.batches(16):
    prep = prepare_subtomo_batch(batch, parts.optics)
    idx = np.asarray(batch.index)
    model = model_transforms(proj, prep) * prep.transfer  # (K, B, D, D, Dh)
    pp = prep.premult_power.clamp_min(1e-6)
    r = (prep.data - model[torch.as_tensor(states[idx]), torch.arange(len(idx))]).abs() ** 2 / pp
    for j, i in enumerate(idx):
        a = acc[(tomo[i], half[i])]
        a[0] += (r[j] * prep.mask[j]).double()
        a[1] += prep.mask[j].double()
    cache.append((idx, prep.data, model, pp, prep.mask))
def profile(t, h):
    s, c = acc[(t, h)]
    v = s / c.clamp_min(1)
    sig = torch.zeros(ns, dtype=torch.float64).index_add_(0, shell.flatten().clamp_max(ns - 1), (s).flatten()) / \
        torch.zeros(ns, dtype=torch.float64).index_add_(0, shell.flatten().clamp_max(ns - 1), c.flatten()).clamp_min(1)
    return v, sig
res = {}
for name in ("shell", "profile"):
    ll = np.zeros((len(tomo), 4))
    for idx, x, model, pp, mask in cache:
        for j, i in enumerate(idx):
            v, sig = profile(tomo[i], 1 - half[i])   # the other half's estimate
            sig_vox = sig[shell.clamp_max(ns - 1)]
            var = sig_vox if name == "shell" else v.clamp_min(1e-3 * float(sig.mean()))
            var = (var.float() * pp[j])
            e = ((x[j] - model[:, j]).abs() ** 2 / var * mask[j]).sum((1, 2, 3))
            ll[i] = -e.numpy()
    lab = ll.argmax(1)
    res[name] = adjusted_rand_score(states, lab)
    # d'^2 between the two A-states: mean LLR gap
    print(name, "ARI", round(res[name], 3))

"""Region oracle: focused two-class EM inside each component's TRUE region, started from
the true labels (accuracy it settles at) and the held-out test's z there; the ARI of the
two splits combined. Says whether finding B's region would be worth it.
usage: true_regions.py SIM_DIR STAR ml2d|ml3d"""
import sys
import time

import mrcfile
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score as ari

import tomohet.methods.discovery as D
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.region_test import em_region_test, focused_fit, sub_halves

torch.set_num_threads(1)
sim, star, kind = sys.argv[1:4]
t0 = time.perf_counter()
p = read_particles(star)
Cls = ML2D if kind == "ml2d" else ML3D
m = Cls(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
setup = D.discover_with(plain, 4, "auto", "components", halves, 0)
setup = D.Setup(plain, plain, setup.discovery, True, None, setup.consensus, setup.noise)
truth = pd.read_csv(f"{sim}/truth.csv").set_index("name")
st = truth.loc[[p.names[i] for i in keep], "state_name"].to_numpy()
A = np.isin(st, ["A", "A+B"]).astype(int)
B = np.isin(st, ["B", "A+B"]).astype(int)
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
box = plain.box
small = setup.discovery.small_box


def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    ks = keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
    ks = ndimage.binary_dilation(ks, iterations=1)
    soft = ndimage.gaussian_filter(ks.astype(float), 0.7)
    soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    return D.upsample_mask(torch.from_numpy(soft.astype(np.float32)), box)


print(f"setup {time.perf_counter() - t0:.0f} s", flush=True)
for i, (cm, _, cl) in enumerate(setup.discovery.candidates):
    w = cm.numpy()
    fr = [float((w * np.clip(d, 0, None)).sum() / np.clip(d, 0, None).sum())
          for d in (vols[0] - vols[2], vols[0] - vols[1])]
    print(f"  cand {i}: frac box {w.mean():.4f} A inside {fr[0]:.2f} B inside {fr[1]:.2f} "
          f"start ARI on A {ari(A, cl):.3f} on B {ari(B, cl):.3f}", flush=True)
labs = {}
allm = np.arange(len(keep))
for name, comp, diff in (("A", A, vols[0] - vols[2]), ("B", B, vols[0] - vols[1])):
    mask = region(diff)
    model = Cls(n_classes=2, random_state=0, progress=False, n_restarts=1)
    sub = sub_halves(plain.names, plain.tomo_names, allm, 0)
    state = focused_fit(model, setup, filtered, allm, mask, comp.copy(), sub)
    lab = state.posteriors.argmax(1)
    if (lab == comp).mean() < 0.5:
        lab = 1 - lab
    labs[name] = lab
    print(f"{name}: frac box {float(mask.mean()):.4f} true-start acc {(lab == comp).mean():.3f} "
          f"ARI {ari(comp, lab):.3f} t {time.perf_counter() - t0:.0f}", flush=True)
    test = em_region_test(m, setup, filtered, mask, comp.copy(), halves, 0)
    print(f"  held-out z from true labels {test.z:.2f} gain {test.gain.sum():.1f} "
          f"t {time.perf_counter() - t0:.0f}", flush=True)
tr = A * 2 + B
print(f"combined ARI {ari(tr, labs['A'] * 2 + labs['B']):.3f}; A only {ari(tr, labs['A']):.3f}")

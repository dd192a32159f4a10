"""Power of the held-out test against the number of folds: inside component B's (and A's)
TRUE region, from the TRUE labels, the test's z with 2 folds (as run), 3 and 5 folds
(each particle evaluated by the model fitted on the other folds; folds keyed by name).
usage: kfold_test.py SIM_DIR STAR ml2d|ml3d COMPONENTS FOLDS   e.g. ... ml2d B 2,3,5"""
import sys
import time

import mrcfile
import numpy as np
import pandas as pd
import torch
from scipy import ndimage

import tomohet.methods.discovery as D
import tomohet.methods.region_test as RT
from tomohet.data.keys import half_sets, keyed_order
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D

torch.set_num_threads(1)
sim, star, kind, which, folds = sys.argv[1:6]
t0 = time.perf_counter()
p = read_particles(star)
Cls = ML2D if kind == "ml2d" else ML3D
m = Cls(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
D.discover = lambda *a, **k: D.Discovery(None, np.zeros(len(keep), np.int64),
                                         torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), 24, 1.0)
setup = D.discover_with(plain, 4, "auto", "components", halves, 0)
setup = D.Setup(plain, plain, setup.discovery, True, None, setup.consensus, setup.noise)
truth = pd.read_csv(f"{sim}/truth.csv").set_index("name")
st = truth.loc[[p.names[i] for i in keep], "state_name"].to_numpy()
comps = {"A": np.isin(st, ["A", "A+B"]).astype(int), "B": np.isin(st, ["B", "A+B"]).astype(int)}
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float64) for i in range(4)]
diffs = {"A": vols[0] - vols[2], "B": vols[0] - vols[1]}
box, small, n = plain.box, 24, len(keep)
print(f"setup {time.perf_counter() - t0:.0f} s", flush=True)


def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    ks = keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
    ks = ndimage.binary_dilation(ks, iterations=1)
    soft = ndimage.gaussian_filter(ks.astype(float), 0.7)
    soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    return D.upsample_mask(torch.from_numpy(soft.astype(np.float32)), box)


def kfold(k):
    order = keyed_order(list(plain.names), list(plain.tomo_names), 0, stream="kfold")
    fold = np.zeros(n, dtype=np.int64)
    fold[order] = np.arange(n) % k

    def test(halves_, fold_labels, fit2, evaluate):
        gain = np.zeros(n)
        for f in range(k):
            train, held = np.nonzero(fold != f)[0], np.nonzero(fold == f)[0]
            gain[held] = evaluate(held, fit2(train, np.asarray(fold_labels)[train]))
        z, pv = RT.gain_z(gain)
        return RT.RegionTest(gain, z, pv)
    return test


orig = RT.heldout_test
for name in which.split(","):
    mask = region(diffs[name])
    for k in [int(x) for x in folds.split(",")]:
        RT.heldout_test = orig if k == 2 else kfold(k)
        res = RT.em_region_test(m, setup, filtered, mask, comps[name].copy(), halves, 0)
        print(f"{name} {k} folds: z {res.z:.2f} p {res.p:.4f} total gain "
              f"{res.gain.sum():.1f} nats t {time.perf_counter() - t0:.0f}", flush=True)

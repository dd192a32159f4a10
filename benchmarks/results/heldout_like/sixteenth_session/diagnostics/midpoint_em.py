"""Is the pull of two-class EM's populations towards 1/2 made by where the class
difference is shrunk? shrink_class_differences shrinks each class map towards the
population-weighted mean u = sum pi_k m_k; for two classes that moves the boundary (the
midpoint of the shrunk maps) towards the larger class by (1 - g)(pi - 1/2) of the
difference. Inside each component's true region, from the true labels, 8 iterations of:
  std: as the methods do;
  mid: the maps shrunk towards their unweighted mean (the midpoint for two classes).
Prints accuracy and the present class's population by iteration.
usage: midpoint_em.py SIM_DIR STAR ml2d|ml3d [A,B]"""
import sys
import time

import mrcfile
import numpy as np
import pandas as pd
import torch
from scipy import ndimage

import tomohet.methods.discovery as D
import tomohet.methods.em as E
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.em_state import EMState
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.region_test import focused_engine, sub_halves

torch.set_num_threads(1)
sim, star, kind = sys.argv[1:4]
which = sys.argv[4].split(",") if len(sys.argv) > 4 else ["A", "B"]
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
vols_t = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float64) for i in range(4)]
diffs = {"A": vols_t[0] - vols_t[2], "B": vols_t[0] - vols_t[1]}
box, small, n = plain.box, 24, len(keep)
sigma2 = setup.noise.sigma2.cpu()
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


def mstep(eng, post, hh):
    vols, fsc, _ = eng.volumes_from(eng.reconstruct_pass(post, None, hh))
    pri = torch.as_tensor(post.mean(0)).float().clamp_min(1e-6)
    return vols, pri / pri.sum(), fsc


def estep(eng, vols, pri, fsc):
    s = EMState(volumes=vols, priors=pri, sigma2=sigma2,
                posteriors=np.zeros((len(eng.index), 2)), fsc=fsc)
    return eng.em_pass(s, np.zeros(len(eng.index), np.int64))[2]


def symmetric(vols, pri):
    d = vols[1] - vols[0]
    return torch.stack([-pri[1] * d, pri[0] * d])


def acc(post, comp):
    lab = post.argmax(1)
    a = (lab == comp).mean()
    return max(a, 1 - a)


for name in which:
    comp, mask = comps[name], region(diffs[name])
    allm = np.arange(n)
    eng = focused_engine(setup, allm, mask, 2)
    sub = sub_halves(plain.names, plain.tomo_names, allm, 0)
    start = np.eye(2)[comp]
    orig = E.shrink_class_differences
    for mode in ("std", "mid"):
        E.shrink_class_differences = orig if mode == "std" else (
            lambda maps, half, w, *a, **k: orig(maps, half, (w > 0).to(w.dtype), *a, **k))
        post, line = start.copy(), []
        for it in range(8):
            v, pr, fs = mstep(eng, post, sub)
            post = estep(eng, v, pr, fs)
            pres = 1 if (post.argmax(1) == comp).mean() >= 0.5 else 0
            line.append(f"{acc(post, comp):.3f}/{post[:, pres].mean():.3f}")
        print(f"{name} {mode}: acc/population by iteration {' '.join(line)} "
              f"(true population {comp.mean():.3f}) t {time.perf_counter() - t0:.0f}",
              flush=True)
    E.shrink_class_differences = orig

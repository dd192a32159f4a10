"""(prior_check) Which part of the E-step after a fit matters? Does EM drift from the true labels because each particle's template holds its own
noise? Inside each component's true region, from the true labels, 8 iterations of:
  std: M-step on all particles, E-step with those maps (what the methods do);
  sym: as std, the two maps replaced by the split of their difference about the
       consensus, -(p) d and (1-p) d (rank one);
  cross: each half's maps from its own particles only; each half classified with the
       other half's maps (no particle in its own template).
usage: crossfit_em.py SIM_DIR STAR ml2d|ml3d [A,B]"""
import sys
import time

import mrcfile
import numpy as np
import pandas as pd
import torch
from scipy import ndimage

import tomohet.methods.discovery as D
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.em_state import EMState
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.region_test import focused_engine, focused_fit, sub_halves

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
    model = Cls(n_classes=2, random_state=0, progress=False, n_restarts=1)
    state = focused_fit(model, setup, filtered, allm, mask, comp.copy(), sub)
    lab = state.posteriors.argmax(1)
    pres = 1 if (lab == comp).mean() >= 0.5 else 0
    occ = float(comp.mean())
    tp = torch.tensor([1 - occ, occ] if pres == 1 else [occ, 1 - occ]).float()
    print(f"{name}: fit {state.iteration} iterations, priors {np.round(state.priors.numpy(), 3)} "
          f"(present class {pres}, true occupancy {occ:.2f}), acc {acc(state.posteriors, comp):.3f}"
          f", history {[round(h['populations'][pres], 3) for h in state.history]}", flush=True)
    s2 = state.sigma2
    for tag, v, pr in (("own maps, own priors", state.volumes, state.priors),
                       ("own maps, true priors", state.volumes, tp),
                       ("own maps, equal priors", state.volumes, torch.tensor([0.5, 0.5])),
                       ("sym maps, own priors", symmetric(state.volumes, state.priors), state.priors),
                       ("sym maps, true priors", symmetric(state.volumes, tp), tp)):
        sigma2 = s2
        print(f"  {tag}: acc {acc(estep(eng, v, pr, state.fsc), comp):.3f}", flush=True)

"""(variants of the fitted difference) How good could a component's split be with a better template? Inside each component's
true region: the focused two-class EM from the true labels (its maps: the baseline), then
one E-step with the class maps replaced by (T) the true difference, (C) the consensus
inside the component's true support divided by its occupancy: a template estimated from
all particles at once. usage: template_oracle.py SIM_DIR STAR ml2d|ml3d"""
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
from tomohet.methods.em_state import EMState
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.region_test import focused_engine, focused_fit, sub_halves

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
D.discover = lambda *a, **k: D.Discovery(None, np.zeros(len(keep), np.int64),
                                         torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), 24, 1.0)
setup = D.discover_with(plain, 4, "auto", "components", halves, 0)
setup = D.Setup(plain, plain, setup.discovery, True, None, setup.consensus, setup.noise)
cons = setup.consensus.double()
truth = pd.read_csv(f"{sim}/truth.csv").set_index("name")
st = truth.loc[[p.names[i] for i in keep], "state_name"].to_numpy()
A = np.isin(st, ["A", "A+B"]).astype(int)
B = np.isin(st, ["B", "A+B"]).astype(int)
names = ["A+B", "A", "B", "core"]
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float64) for i in range(4)]
pops = [float((st == s).mean()) for s in names]
mean_true = sum(w * v for w, v in zip(pops, vols))
g = lambda v: ndimage.gaussian_filter(v, 1.5)
alpha = float((g(cons.numpy()) * g(mean_true)).sum() / (g(mean_true) ** 2).sum())
box, small = plain.box, 24
print(f"setup {time.perf_counter() - t0:.0f} s; scale consensus/truth {alpha:.4g}", flush=True)


def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    ks = keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
    ks = ndimage.binary_dilation(ks, iterations=1)
    soft = ndimage.gaussian_filter(ks.astype(float), 0.7)
    soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    return D.upsample_mask(torch.from_numpy(soft.astype(np.float32)), box)


def estep(mask, state, d, occ, halves_):
    vols = torch.stack([-occ * d, (1 - occ) * d]).float()
    s2 = EMState(volumes=vols, priors=torch.tensor([1 - occ, occ]).float(),
                 sigma2=state.sigma2, posteriors=np.zeros((len(keep), 2)), fsc=state.fsc)
    eng = focused_engine(setup, np.arange(len(keep)), mask, 2)
    return eng.em_pass(s2, halves_)[2]


allm = np.arange(len(keep))
labs = {}
for name, comp, diff in (("A", A, vols[0] - vols[2]), ("B", B, vols[0] - vols[1])):
    mask = region(diff)
    model = Cls(n_classes=2, random_state=0, progress=False, n_restarts=1)
    sub = sub_halves(plain.names, plain.tomo_names, allm, 0)
    state = focused_fit(model, setup, filtered, allm, mask, comp.copy(), sub)
    lab = state.posteriors.argmax(1)
    flip = (lab == comp).mean() < 0.5
    if flip:
        lab = 1 - lab
    occ = float(comp.mean())
    fitted = (state.volumes[1] - state.volumes[0]).double() * (-1 if flip else 1)
    d_true = torch.from_numpy(alpha * diff)
    print(f"{name}: occupancy {occ:.2f}; EM from true labels acc {(lab == comp).mean():.3f}; "
          f"fitted diff / true diff {float((fitted * d_true).sum() / (d_true ** 2).sum()):.3f} "
          f"t {time.perf_counter() - t0:.0f}", flush=True)
    res = {"F": lab}
    sup = ndimage.gaussian_filter(np.clip(diff, 0, None), 1.0)
    sign = 1.0 if float((fitted * cons).sum()) > 0 else -1.0  # present: more density
    print(f"  orientation from the consensus {'right' if sign > 0 else 'WRONG'}")
    f = fitted * sign
    gc = torch.from_numpy(ndimage.gaussian_filter(cons.numpy(), 1.0))
    csup = (gc > 0.15 * gc.max()).double()
    fp = f.clamp_min(0)
    for tag, d in (("F", f), ("F+", fp), ("Fc", f * csup), ("F+c", fp * csup),
                   ("F+c x0.7", 0.7 * fp * csup), ("F+c x1.4", 1.4 * fp * csup),
                   ("F+ smooth", torch.from_numpy(ndimage.gaussian_filter(fp.numpy(), 0.7)))):
        post = estep(mask, state, d, occ, halves)
        lt = post.argmax(1)
        res[tag] = lt
        print(f"  {tag}: acc {(lt == comp).mean():.3f} "
              f"|d|/|true| {float(d.norm() / d_true.norm()):.2f} "
              f"cos {float((d * d_true).sum() / d.norm() / d_true.norm()):.2f}", flush=True)
    labs[name] = res
tr = A * 2 + B
for tag in labs["A"]:
    print(f"combined {tag}: ARI {ari(tr, labs['A'][tag] * 2 + labs['B'][tag]):.3f}")

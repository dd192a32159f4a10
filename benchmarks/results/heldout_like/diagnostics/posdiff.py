"""Does a sign constraint on the class difference (a component that comes and goes adds
density: present - absent >= 0 inside the region) raise the accuracy of A's split?
Two-class focused EM inside A's true region, from the true labels and from k-means,
with and without the constraint.
usage: posdiff.py MASS SNR N VARIANTS   (VARIANTS: comma list of plain,pos,posm)"""
import dataclasses
import sys
import time

import numpy as np
import torch
from scipy import ndimage

import tomohet.methods.em as em_mod
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.discovery import Discovery, Setup, small_box_for, upsample_mask
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D
from tomohet.physics.reconstruction import shrink_class_differences as shrink0

torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
variants = sys.argv[4].split(",")
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
p = ds.particles
s = np.asarray(ds.states)
A = np.isin(s, [0, 1]).astype(int)
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
nn = len(keep)
cons = plain.volumes_from(plain.reconstruct_pass(np.ones((nn, 1)), None, halves))[0][0]
box = plain.box
small = small_box_for(box, plain.px, 4 * plain.px)
V = torch.as_tensor(ds.state_volumes).float()


def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff.numpy()), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    ks = keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
    ks = ndimage.binary_dilation(ks, iterations=1)
    soft = ndimage.gaussian_filter(ks.astype(float), 0.7)
    soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    return torch.from_numpy(soft.astype(np.float32))


full = upsample_mask(region(V[0] - V[2]), box)
MODE = {"v": "plain"}


def shrink(maps, half_maps, weight, tau, fsc_mask=None):
    out, curves = shrink0(maps, half_maps, weight, tau, fsc_mask)
    if MODE["v"] == "plain" or out.shape[0] != 2:
        return out, curves
    w = weight.double().clamp_min(0)
    pi = (w / w.sum()).to(out.dtype)
    u = pi[0] * out[0] + pi[1] * out[1]
    d = out[1] - out[0]
    msk = fsc_mask if fsc_mask is not None else torch.ones_like(d)
    sign = 1.0 if float((d * msk).sum()) >= 0 else -1.0
    dpos = sign * torch.clamp(sign * d, min=0)
    if MODE["v"] == "posm":  # and nothing outside the region
        dpos = dpos * msk
    return torch.stack([u - pi[1] * dpos, u + pi[0] * dpos]), curves


em_mod.shrink_class_differences = shrink
binary = ML2D(n_classes=2, random_state=0, progress=False, n_restarts=1)


def fit(init):
    eng = EMEngine(plain.particles, dataclasses.replace(cfg, n_classes=2), plain.index,
                   plain.reference_mask, full, cons, subtract_all=True)
    disc = Discovery(full, init, torch.zeros(small, small, small),
                     torch.zeros(small, small, small), small, 1.0)
    binary.discovery_ = disc
    binary.setup_ = Setup(eng, plain, disc, True, full, cons)
    st = binary._initialise(eng, plain.particles, np.arange(nn), halves, 0)
    return binary._iterate(eng, st, halves, binary.n_iter, None)


def report(tag, st):
    lab = st.posteriors.argmax(1)
    if (lab[A == 1] == 1).mean() < 0.5:
        lab = 1 - lab
    print(f"{tag}: acc {(lab == A).mean():.3f} present {(lab[A == 1] == 1).mean():.3f} "
          f"absent {(lab[A == 0] == 0).mean():.3f} t {time.perf_counter() - t0:.0f}", flush=True)


rng = np.random.default_rng(0)
noisy = np.where(rng.random(nn) < 0.7, A, 1 - A)  # a 70%-right start
for v in variants:
    MODE["v"] = v
    report(f"{v} true-start", fit(A.copy()))
    report(f"{v} 70%-start", fit(noisy.copy()))

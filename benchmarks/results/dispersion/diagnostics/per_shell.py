"""The likelihood dispersion per resolution shell (random smooth fields, as
tomohet.methods.dispersion, the log-likelihood ratio split by shell).
usage: per_shell.py STAR [ml2d|ml3d]"""
import sys

import numpy as np
import torch

from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.dispersion import smooth_fields
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D
from tomohet.physics.forward import model_transforms

torch.set_num_threads(1)
p = read_particles(sys.argv[1])
cls = ML3D if (len(sys.argv) > 2 and sys.argv[2] == "ml3d") else ML2D
m = cls(n_classes=2, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
eng = EMEngine(filtered, cfg, keep, ref_mask)
n = len(keep)
cons = eng.volumes_from(eng.reconstruct_pass(np.ones((n, 1)), None, halves))[0][0]
noise = eng.noise_pass(cons[None], np.zeros(n, dtype=np.int64))
F = 8
delta = smooth_fields(ref_mask if ref_mask is not None else torch.ones_like(cons), F, 2.0, 0)
delta = delta * 0.1 * float(cons.std())
proj = eng.projector(delta)
S = noise.n_shells
Lsh = torch.zeros((n, F, S), dtype=torch.float64)
Dsh = torch.zeros_like(Lsh)
for rows in eng.batches():
    prep = eng.prepare(eng.index[rows])
    sl = model_transforms(proj, prep)  # (F, B, ...)
    inv = prep.mask.float() * (noise.herm / 2) / (noise.per_pixel(prep.group) * prep.premult_power.clamp_min(1e-6))
    pred = sl * prep.transfer
    r = prep.data - prep.transfer * model_transforms(eng.projector(cons[None]), prep)[0]
    L = 2 * (r.conj()[None] * pred).real * inv  # LLR of u+d vs u-d per pixel
    D = 4 * (pred.real**2 + pred.imag**2) * inv
    sh = noise.shell.expand(L.shape[2:]) if L.dim() == 5 else noise.shell
    shf = sh.reshape(-1)
    for f in range(F):
        for b, row in enumerate(rows):
            Lsh[row, f].index_add_(0, shf, L[f, b].reshape(-1).double())
            Dsh[row, f].index_add_(0, shf, D[f, b].reshape(-1).double())
Lc = Lsh - Lsh.mean(0, keepdim=True)
num = Lc.pow(2).sum((0, 1))
den = Dsh.sum((0, 1))
tot = Lsh.sum(2)
print(f"{type(p).__name__}: all shells {float((tot - tot.mean(0)).pow(2).sum() / Dsh.sum()):.3f}")
for s in range(S):
    if den[s] > 0:
        print(f"shell {s:2d}: dispersion {float(num[s] / den[s]):.3f}  share of d'^2 {float(den[s] / den.sum()):.3f}")

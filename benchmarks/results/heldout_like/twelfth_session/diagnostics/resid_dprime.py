"""How well each path's residual maps (discovery's, before the variance test) separate
particles with a component from those without: per-voxel t of the present-absent mean
difference inside the component's region, and the variance-ratio excess there.
usage: resid_dprime.py SIM_DIR STAR ml2d|ml3d [noprofile]"""
import sys

import mrcfile
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import tomohet.methods.discovery as D
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.detection import gaussian_lowpass, shell_index
from tomohet.methods.dispersion import calibrate_noise
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.residual_scan import residual_maps

torch.set_num_threads(1)
sim, star, kind = sys.argv[1:4]
variant = sys.argv[4] if len(sys.argv) > 4 else ""
p = read_particles(star)
m = (ML2D if kind == "ml2d" else ML3D)(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
eng = EMEngine(filtered, cfg, keep, ref_mask)
n = len(eng.index)
cons = eng.volumes_from(eng.reconstruct_pass(np.ones((n, 1)), None, halves))[0][0]
noise = eng.noise_pass(cons[None], np.zeros(n, dtype=np.int64))
if variant != "noprofile":
    noise, _ = D.with_noise_profile(eng, cons, noise)
noise = calibrate_noise(eng, cons, noise, 0)
maps = residual_maps(eng, cons, noise, 24)
names = [filtered.names[i] for i in range(len(filtered.names))]
truth = pd.read_csv(f"{sim}/truth.csv").set_index("name").loc[names]
st = truth["state_name"].values
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
comps = {"A": (np.clip(vols[0] - vols[2], 0, None), np.isin(st, ["A", "A+B"])),
         "B": (np.clip(vols[0] - vols[1], 0, None), np.isin(st, ["B", "A+B"]))}
sh = shell_index(24)
power = maps.double().pow(2).mean((1, 2, 3)).numpy()
print(f"per-particle map power: CV {power.std() / power.mean():.3f}, p95/p5 "
      f"{np.percentile(power, 95) / np.percentile(power, 5):.2f}")
for scale, norm in ((0.0, False), (0.75, False), (1.5, False), (0.75, True)):
    x = gaussian_lowpass(maps, scale) if scale else maps
    x = x.double().numpy()
    if norm:  # each particle's map to the mean power
        x = x / np.sqrt(power / power.mean())[:, None, None, None]
    var = x.var(0)
    med = np.array([np.median(var[sh.numpy() == r]) for r in range(sh.max() + 1)])
    ratio = var / med[sh.numpy()]
    line = [f"{kind}{variant} scale {scale}{' normalised' if norm else ''}"]
    for name, (c, has) in comps.items():
        cs = F.adaptive_avg_pool3d(torch.from_numpy(c)[None, None], 24)[0, 0].numpy()
        reg = cs > 0.2 * cs.max()
        diff = x[has].mean(0) - x[~has].mean(0)
        sd = np.sqrt(0.5 * (x[has].var(0) + x[~has].var(0)))
        t = diff / sd * np.sqrt(has.sum() * (~has).sum() / len(has))
        line.append(f"{name}: max|t| {np.abs(t[reg]).max():.2f} sum t2 {(t[reg] ** 2).sum():.1f} "
                    f"ratio-1 max {ratio[reg].max() - 1:.3f}")
    noise_ratio = ratio[sh.numpy() <= 8]
    spread = 1.4826 * np.median(np.abs(noise_ratio - np.median(noise_ratio)))
    line.append(f"ratio spread (MAD, r<=8) {spread:.3f}")
    rng = np.random.default_rng(0)
    nulls = []
    for _ in range(5):
        h = rng.permutation(len(x)) < len(x) // 2
        ra, rb = x[h].var(0) / med[sh.numpy()], x[~h].var(0) / med[sh.numpy()]
        nr = ((ra - rb) / 2)[sh.numpy() <= 8]
        nulls.append(1.4826 * np.median(np.abs(nr - np.median(nr))))
    line.append(f"half-split spread {np.mean(nulls):.3f}")
    kurt = ((x - x.mean(0)) ** 4).mean(0) / x.var(0) ** 2
    line.append(f"kurtosis (median voxel) {np.median(kurt):.2f}")
    print(" | ".join(line), flush=True)
    if scale == 0.75 and not norm:
        np.savez(f"/work/scratch/ratio_{kind}{variant}.npz", ratio=ratio, shell=sh.numpy(),
                 cons=F.adaptive_avg_pool3d(cons[None, None].float(), 24)[0, 0].numpy())

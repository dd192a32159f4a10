"""Discovery on the same particles as tilt images (ml2d) and as subtomograms (ml3d): the
variance z inside each true component and where the candidates lie.
usage: disc_paths.py SIM_DIR STAR ml2d|ml3d [noprofile|further]"""
import sys
import time

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F

import tomohet.methods.discovery as D
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D

torch.set_num_threads(1)
sim, star, kind = sys.argv[1:4]
variant = sys.argv[4] if len(sys.argv) > 4 else ""
if variant == "noprofile":
    D.with_noise_profile = lambda engine, consensus, noise: (noise, None)
t0 = time.perf_counter()
p = read_particles(star)
m = (ML2D if kind == "ml2d" else ML3D)(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
orig = D.discover
D.discover = lambda *a, **k: orig(*a, **{**k, "n_candidates": 6})
setup = D.discover_with(plain, 4, "auto", "components", halves, 0)
dsc = setup.discovery
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
comps = {"A": np.clip(vols[0] - vols[2], 0, None), "B": np.clip(vols[0] - vols[1], 0, None)}
z = dsc.z.numpy()
small = z.shape[-1]
inside = np.zeros(z.shape, bool)
line = [f"{kind} {variant}", f"region {dsc.region}", f"max {z.max():.2f} thr {dsc.threshold:.2f}"]
for name, c in comps.items():
    cs = F.adaptive_avg_pool3d(torch.from_numpy(c)[None, None], small)[0, 0].numpy()
    reg = cs > 0.2 * cs.max()
    inside |= reg
    line.append(f"{name} z {z[reg].max():.2f}")
line.append(f"elsewhere {np.sort(z[~inside])[-3:][::-1].round(2)}")
line.append(f"dispersion {dsc.noise_dispersion:.3f} profile {dsc.noise_profile}")
print(" | ".join(line))
for i, (mask, _, _) in enumerate(dsc.candidates):
    w = mask.numpy()
    fr = [float((w * c).sum() / c.sum()) for c in comps.values()]
    print(f"  cand {i}: frac box {w.mean():.4f} A inside {fr[0]:.2f} B inside {fr[1]:.2f}")
print(f"t {time.perf_counter() - t0:.0f} s")

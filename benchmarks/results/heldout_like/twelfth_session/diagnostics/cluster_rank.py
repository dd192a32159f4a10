"""Where the true components rank among discovery's clusters when clusters are ranked by
their peak z (as now) or by their mass (sum of z above the cluster level).
usage: cluster_rank.py SIM_DIR STAR ml2d|ml3d"""
import sys

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

import tomohet.methods.discovery as D
from tomohet.data.keys import half_sets
from tomohet.io.readers import read_particles
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D, ML3D
from tomohet.methods.peaks import split_clusters

torch.set_num_threads(1)
sim, star, kind = sys.argv[1:4]
p = read_particles(star)
m = (ML2D if kind == "ml2d" else ML3D)(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p)
ref_mask, _ = m._masks(p, torch.device("cpu"))
cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
eng = EMEngine(filtered, cfg, keep, ref_mask)
seen = {}
orig = D.candidate_regions


def spy(det, scale, *a, **k):
    seen.setdefault("calls", []).append((det, scale, k.get("confirm")))
    return orig(det, scale, *a, **k)


D.candidate_regions = spy
D.discover_with(eng, 4, "auto", "components", halves, 0)
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
comps = {"A": np.clip(vols[0] - vols[2], 0, None), "B": np.clip(vols[0] - vols[1], 0, None)}
det, scale, confirm = seen["calls"][-1]
ref = confirm if confirm is not None else det
i = int(np.argmin(np.abs(np.asarray(det.scales) - scale)))
z = det.z_scales[i].numpy()
lab, n = ndimage.label(z > 0.6 * det.threshold)
lab, n = split_clusters(z, lab, n, det.threshold)
zc = ref.z.numpy()
idx = np.arange(1, n + 1)
peak = np.asarray(ndimage.maximum(zc, lab, index=idx), float)
mass = np.asarray(ndimage.sum(np.clip(zc - 0.6 * det.threshold, 0, None), lab, index=idx), float)
size = np.asarray(ndimage.sum(np.ones_like(zc), lab, index=idx), float)
small = z.shape[-1]
print(f"{kind} {sim.split('/')[-1]}: {n} clusters, threshold {det.threshold:.2f}, scale {scale}")
for name, c in comps.items():
    cs = F.adaptive_avg_pool3d(torch.from_numpy(c)[None, None], small)[0, 0].numpy()
    frac = np.asarray(ndimage.sum(cs, lab, index=idx)) / cs.sum()
    best = int(np.argmax(frac))
    rp = int((peak > peak[best]).sum()) + 1
    rm = int((mass > mass[best]).sum()) + 1
    print(f"  {name}: cluster holds {frac[best]:.2f} of it, peak {peak[best]:.2f} (rank {rp}), "
          f"mass {mass[best]:.1f} (rank {rm}), size {size[best]:.0f}")
order = np.argsort(-mass)[:8]
print("  top by mass:", [(round(mass[j], 1), round(peak[j], 2), int(size[j])) for j in order])

"""Feasibility v2: cross-validated likelihood gain of a 2-class split in a region."""
import sys, time, dataclasses
import numpy as np, torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.ml import ML2D
from tomohet.methods.em import EMEngine
from tomohet.methods.em_state import EMState
from tomohet.methods.discovery import upsample_mask, component_labels, Discovery, Setup, small_box_for
from tomohet.methods.residual_scan import residual_maps
from tomohet.methods.detection import gaussian_lowpass
torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
p = ds.particles
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p); ref_mask, _ = m._masks(p, torch.device("cpu")); cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
sub = half_sets(p.names, p.tomo_names, 1, None)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
nn = len(keep)
cons = plain.volumes_from(plain.reconstruct_pass(np.ones((nn, 1)), None, halves))[0][0]
box = plain.box; small = small_box_for(box, plain.px, 4 * plain.px)
noise = plain.noise_pass(cons[None], np.zeros(nn, dtype=np.int64))
maps = residual_maps(plain, cons, noise, small)
print("setup t", round(time.perf_counter() - t0)); sys.stdout.flush()
V = torch.as_tensor(ds.state_volumes).float()
def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff.numpy()), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    ks = keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
    ks = ndimage.binary_dilation(ks, iterations=1)
    soft = ndimage.gaussian_filter(ks.astype(float), 0.7); soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    return torch.from_numpy(soft.astype(np.float32))
mA = region(V[0] - V[2]); mB = region(V[0] - V[1])
masks = {"A": mA, "B": mB, "flipB": torch.flip(mB, (0, 1, 2)), "flipA": torch.flip(mA, (0, 1, 2)),
         "rollB": torch.roll(mB, (4, -3, 2), (0, 1, 2))}


from tomohet.methods.region_test import gain_z
from sklearn.cluster import KMeans
from scipy.stats import norm
X = gaussian_lowpass(maps, 0.75).reshape(nn, -1).numpy().astype(np.float64)
d = small
g = np.stack(np.meshgrid(*[np.arange(d)] * 3, indexing="ij"), -1).reshape(-1, 3)
c0 = (d - 1) / 2
rad = np.linalg.norm(g - c0, axis=1)
cons_s = torch.nn.functional.avg_pool3d(cons[None, None], box // d)[0, 0].reshape(-1).numpy()
A_s = torch.nn.functional.avg_pool3d(upsample_mask(mA, box)[None, None], box // d)[0, 0].reshape(-1).numpy()
B_s = torch.nn.functional.avg_pool3d(upsample_mask(mB, box)[None, None], box // d)[0, 0].reshape(-1).numpy()
def ldiag(x, mu, var):
    return (-0.5 * ((x - mu) ** 2 / var + np.log(2 * np.pi * var))).sum(1)
def window_test(idx, q=3):
    gain = np.zeros(nn)
    for f in (0, 1):
        tr, te = halves == f, halves != f
        F = X[tr][:, idx]; mu = F.mean(0)
        u, s, vt = np.linalg.svd(F - mu, full_matrices=False)
        P = vt[:q].T
        ytr = (F - mu) @ P; yte = (X[te][:, idx] - mu) @ P
        km = KMeans(2, n_init=4, random_state=0).fit(ytr)
        lab = km.labels_; pri = np.bincount(lab, minlength=2) / len(lab)
        within = np.stack([((ytr[lab == k] - km.cluster_centers_[k]) ** 2).sum(0) for k in (0, 1)]).sum(0) / len(lab)
        tot = ytr.var(0)
        mix = np.logaddexp(np.log(pri[0] + 1e-12) + ldiag(yte, km.cluster_centers_[0], within),
                           np.log(pri[1] + 1e-12) + ldiag(yte, km.cluster_centers_[1], within))
        gain[te] = mix - ldiag(yte, 0.0, tot)
    return gain
radius = 8
cent = np.nonzero((rad <= radius) & (g % 2 == 0).all(1))[0]
print("windows", len(cent), "t", round(time.perf_counter() - t0)); sys.stdout.flush()
rows = []
for ci in cent:
    idx = np.nonzero(np.linalg.norm(g - g[ci], axis=1) <= 2.0)[0]
    gn = window_test(idx)
    z, p = gain_z(gn)
    rows.append((z, gn.sum(), float(A_s[idx].mean()), float(B_s[idx].mean()), tuple(g[ci])))
rows.sort(key=lambda r: -r[0])
print("t", round(time.perf_counter() - t0))
for r in rows[:15]:
    print("z %.2f total %.1f inA %.2f inB %.2f at %s" % r)
bz = [r for r in rows if r[3] > 0.3]
print("windows in B:", len(bz), "best", ["z %.2f total %.1f inB %.2f" % (r[0], r[1], r[3]) for r in sorted(bz, key=lambda r: -r[0])[:5]])
az = [r for r in rows if r[2] > 0.3]
print("windows in A:", len(az), "best", ["z %.2f inA %.2f" % (r[0], r[2]) for r in sorted(az, key=lambda r: -r[0])[:3]])
print("null-ish (no A/B): top z", [round(r[0], 2) for r in rows if r[2] < 0.05 and r[3] < 0.05][:5])

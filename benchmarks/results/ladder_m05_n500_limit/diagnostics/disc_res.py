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


from tomohet.methods.discovery import discover
fA, fB = upsample_mask(mA, box), upsample_mask(mB, box)
def ov(m):
    m = m.float(); return round(float((m * fA).sum() / m.sum()), 2), round(float((m * fB).sum() / m.sum()), 2)
for res_A in [float(x) for x in sys.argv[4].split(",")]:
    t1 = time.perf_counter()
    found = discover(plain, cons, noise, 4, resolution_A=res_A, seed=0, halves=halves, n_candidates=8)
    sm = found.small_box
    zf = torch.nn.functional.interpolate(found.z[None, None], size=(box, box, box), mode="nearest")[0, 0]
    print(f"res {res_A} small {sm} thr {found.threshold:.2f} p {found.p_value} max z {found.max_z:.2f} in A {float(zf[fA > 0.5].max()):.2f} in B {float(zf[fB > 0.5].max()):.2f} regions {len(found.regions)} t {time.perf_counter()-t1:.0f}", flush=True)
    for i, r in enumerate(found.regions):
        print("  region", i, "frac", round(float(r.mean()), 4), "in A, in B", ov(r))
    for i, (msk, fold, lab) in enumerate(found.candidates):
        print("  cand", i, "in A, in B", ov(msk), "peak z", round(float(zf[msk > 0.5].max()), 2), "ARI_B", round(ari(B, lab), 3), flush=True)

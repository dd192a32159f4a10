"""Power of the held-out EM test on coarse sectors of the particle (not exact masks)."""
import sys, time
import numpy as np, torch
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.ml import ML2D
from tomohet.methods.em import EMEngine
from tomohet.methods.discovery import upsample_mask, component_labels, Setup, small_box_for, discover
from tomohet.methods.residual_scan import residual_maps, crop_to_small
from tomohet.methods.detection import gaussian_lowpass
from tomohet.methods.region_test import em_region_test
torch.set_num_threads(1)
mass, snr, n, M = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
only = [int(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 else None
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
p = ds.particles
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p); ref_mask, _ = m._masks(p, torch.device("cpu")); cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
nn = len(keep)
cons = plain.volumes_from(plain.reconstruct_pass(np.ones((nn, 1)), None, halves))[0][0]
box = plain.box; small = small_box_for(box, plain.px, 4 * plain.px)
noise = plain.noise_pass(cons[None], np.zeros(nn, dtype=np.int64))
maps = residual_maps(plain, cons, noise, small)
found = discover(plain, cons, noise, 4, seed=0, halves=halves)
setup = Setup(plain, plain, found, True, None, cons)
V = torch.as_tensor(ds.state_volumes).float()
def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff.numpy()), 1.0)
    keepm = sm > 0.15 * sm.max()
    f = box // small
    return keepm.reshape(small, f, small, f, small, f).mean((1, 3, 5)) > 0.3
tA = region(V[0] - V[2]); tB = region(V[0] - V[1])
cs = crop_to_small(torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(cons.double())))[None], small)[0].numpy()
sup = cs > 0.1 * cs.max()
sup = ndimage.binary_dilation(sup, iterations=1)
taken = np.zeros_like(sup)
for r in found.regions:
    rs = torch.nn.functional.interpolate(r[None, None], size=(small,) * 3, mode="area")[0, 0].numpy() > 0.2
    taken |= rs
sup &= ~taken
pts = np.argwhere(sup)
print("setup t", round(time.perf_counter() - t0), "support voxels", len(pts), "A vox", tA.sum(), "B vox", tB.sum(), "regions", len(found.regions)); sys.stdout.flush()
lab = KMeans(M, n_init=4, random_state=0).fit_predict(pts.astype(float))
lp = gaussian_lowpass(maps, 0.75)
clf = ML2D(n_classes=4, random_state=0, progress=False)
for c in range(M):
    if only and c not in only: continue
    ch = np.zeros_like(sup); ch[tuple(pts[lab == c].T)] = True
    ch = ndimage.binary_dilation(ch, iterations=1) & ~taken
    soft = ndimage.gaussian_filter(ch.astype(float), 0.7); soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    msk = torch.from_numpy(soft.astype(np.float32))
    fold = np.zeros(nn, dtype=np.int64)
    for f in (0, 1):
        rows = np.nonzero(halves == f)[0]
        fold[rows] = component_labels(lp[rows], msk, 2, np.arange(len(rows)), 0)
    full = upsample_mask(msk, box)
    res = em_region_test(clf, setup, p, full, fold, halves, 0)
    print(f"chunk {c} vox {ch.sum()} inA {(ch & tA).sum()} inB {(ch & tB).sum()} z {res.z:.2f} total {res.gain.sum():.1f} ARI_B fold {ari(B, fold):.3f} t {time.perf_counter()-t0:.0f}"); sys.stdout.flush()

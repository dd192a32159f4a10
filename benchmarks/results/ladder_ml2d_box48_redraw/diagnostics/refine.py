"""Refine a region's mask from the full-box difference of its split's two classes, then re-split."""
import sys, time
import numpy as np, torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.ml import ML2D
from tomohet.methods.em import EMEngine
from tomohet.methods.discovery import upsample_mask, Setup, small_box_for, discover
from tomohet.methods.residual_scan import crop_to_small
from tomohet.methods.detection import gaussian_lowpass, shell_index
from tomohet.methods.factorial import _split
from tomohet.physics.reconstruction import gold_standard_maps
torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
T = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
FR = float(sys.argv[5]) if len(sys.argv) > 5 else 0.3
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
p = ds.particles
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False)
filtered, keep = m._filter(p); ref_mask, _ = m._masks(p, torch.device("cpu")); cfg = m._config(torch.device("cpu"))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
plain = EMEngine(filtered, cfg, keep, ref_mask)
nn = len(keep); A, B = A[keep], B[keep]
cons = plain.volumes_from(plain.reconstruct_pass(np.ones((nn, 1)), None, halves))[0][0]
box = plain.box; small = small_box_for(box, plain.px, 4 * plain.px)
noise = plain.noise_pass(cons[None], np.zeros(nn, dtype=np.int64))
found = discover(plain, cons, noise, 4, seed=0, halves=halves)
setup = Setup(plain, plain, found, True, None, cons)
V = torch.as_tensor(ds.state_volumes).float()
def region(diff):
    sm = ndimage.gaussian_filter(np.abs(diff.numpy()), 1.0)
    return torch.from_numpy(sm > 0.15 * sm.max()).float()
tA = region(V[0] - V[2]); tB = region(V[0] - V[1])
def ov(msk):
    w = msk.float(); return round(float((w * tA).sum() / w.sum()), 2), round(float((w * tB).sum() / w.sum()), 2), round(float((w * tA).sum() / tA.sum()), 2), round(float((w * tB).sum() / tB.sum()), 2)
binary = ML2D(n_classes=2, random_state=0, progress=False, n_restarts=1)
everyone = np.arange(nn)
jobs = [(msk, lab) for msk, lab in zip(found.regions, found.region_labels)] + [(c[0], c[2]) for c in found.candidates[:1]]
from tomohet.methods.residual_scan import residual_maps
R = residual_maps(plain, cons, noise, small).reshape(nn, -1).double()
SC = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
DIL = int(sys.argv[7]) if len(sys.argv) > 7 else 1
print("setup t", round(time.perf_counter() - t0), "scale", found.scale); sys.stdout.flush()
def ft(v): return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(v.double(), dim=(-3,-2,-1)), dim=(-3,-2,-1)), dim=(-3,-2,-1))
for j, (msk, init) in enumerate(jobs):
    comp = A if ov(msk)[0] > ov(msk)[1] else B
    post, hist, sig = _split(binary, setup, p, everyone, halves, msk, init)
    a0 = ari(comp, post.argmax(1))
    w = torch.as_tensor(post, dtype=torch.float64)
    dh = []
    for hh in (0, 1):
        sel = torch.as_tensor(halves == hh)
        ms = [(w[sel, c][:, None] * R[sel]).sum(0) / w[sel, c].sum() for c in (0, 1)]
        dh.append((ms[1] - ms[0]).reshape(small, small, small).float())
    sig_ = gaussian_lowpass(((dh[0] + dh[1]) / 2)[None], SC)[0]
    noi_ = gaussian_lowpass(((dh[0] - dh[1]) / 2)[None], SC)[0]
    rad = shell_index(small) <= found.search_radius
    sd = float(noi_[rad].std())
    z = (sig_ / sd).abs() * rad
    old = torch.nn.functional.interpolate(msk[None, None], size=(small,) * 3, mode="area")[0, 0] > 0.3
    lab, nlab = ndimage.label(z.numpy() > max(T, FR * float(z[old].max())))
    ids = np.unique(lab[old.numpy() & (lab > 0)])
    core = np.isin(lab, ids)
    print(f"job {j} old frac {float(msk.mean()):.4f} ov(A,B,covB) {ov(msk)} split ARI {a0:.3f} maxz {float(z.max()):.1f} maxz-in-old {float(z[old].max()):.1f} clusters hit {len(ids)} core vox {core.sum()}")
    if core.sum() == 0: continue
    grown = ndimage.binary_dilation(core, iterations=DIL) if DIL else core
    soft = ndimage.gaussian_filter(grown.astype(float), 0.7); soft = np.clip(soft / soft.max() * 1.5, 0, 1)
    new = upsample_mask(torch.from_numpy(soft.astype(np.float32)), box)
    post2, hist2, _ = _split(binary, setup, p, everyone, halves, new, post.argmax(1))
    print(f"   new frac {float(new.mean()):.4f} ov {ov(new)} resplit ARI {ari(comp, post2.argmax(1)):.3f} t {time.perf_counter()-t0:.0f}"); sys.stdout.flush()

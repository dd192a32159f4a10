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
lp = gaussian_lowpass(maps, 0.75)
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
binary = ML2D(n_classes=2, random_state=0, progress=False, n_restarts=1)
def fit_half(members, mask_full, init):
    eng = EMEngine(plain.particles, dataclasses.replace(cfg, n_classes=2), plain.index[members], plain.reference_mask,
                   mask_full, cons, subtract_all=True)
    disc = Discovery(mask_full, init, torch.zeros(small, small, small), torch.zeros(small, small, small), small, 1.0)
    binary.discovery_ = disc
    binary.setup_ = Setup(eng, plain, disc, True, mask_full, cons)
    hh = halves[members] if len(members) == nn else sub[members]
    st = binary._initialise(eng, plain.particles, members, hh, 0)
    st = binary._iterate(eng, st, hh, binary.n_iter, None)
    return st
def heldout(members, mask_full, st):
    eng = EMEngine(plain.particles, dataclasses.replace(cfg, n_classes=3), plain.index[members], plain.reference_mask,
                   mask_full, cons, subtract_all=True)
    pri = st.priors.double()
    vols = torch.cat([st.volumes, torch.zeros_like(st.volumes[:1])])
    st3 = EMState(volumes=vols, priors=torch.tensor([pri[0] / 2, pri[1] / 2, 0.5]).float(), sigma2=st.sigma2,
                  posteriors=np.zeros((len(members), 3)), fsc=st.fsc + [st.fsc[0]])
    _, _, post, _ = eng.em_pass(st3, halves[members], None)
    pz = np.clip(post[:, 2], 1e-300, 1)
    g = np.log(np.clip(1 - pz, 1e-300, 1)) - np.log(pz)
    return g, post


def report(tag, comp, st):
    lab = st.posteriors.argmax(1)
    # orient: class with more truth-present
    if (lab[comp == 1] == 1).mean() < 0.5: lab = 1 - lab; pri = st.priors.numpy()[::-1]
    else: pri = st.priors.numpy()
    acc1 = (lab[comp == 1] == 1).mean(); acc0 = (lab[comp == 0] == 0).mean()
    print(f"  {tag}: ARI {ari(comp, lab):.3f} acc {(lab == comp).mean():.3f} present {acc1:.3f} absent {acc0:.3f} n_pred_present {int(lab.sum())}/{int(comp.sum())} pri {np.round(pri,3)} t {time.perf_counter()-t0:.0f}", flush=True)
    return lab
variants = sys.argv[5].split(",")
for name, msk in masks.items():
    if only and name not in only: continue
    full = upsample_mask(msk, box)
    comp = A if "A" in name else B
    allm = np.arange(nn)
    for v in variants:
        base = m._config(torch.device("cpu"))
        if v == "dw0": cfg = dataclasses.replace(base, difference_wiener=False)
        elif v == "cs0": cfg = dataclasses.replace(base, current_size_margin=None)
        elif v.startswith("tf"): cfg = dataclasses.replace(base, tau_fudge=float(v[2:]))
        else: cfg = base
        st = fit_half(allm, full, comp.copy())
        report(f"{name} {v} true-start", comp, st)
        np.save(f"/work/diag/s8/post_{name}_{v}_{n}.npy", st.posteriors)

"""Every cluster discovery's region step sees (ladder cells), each with its own dilated mask
(no exclusion of earlier regions), its peak, p, and its two-class start's ARI against the
true components A and B; and the pairwise ARI of the starts. Usage: clusters.py m:s:n ..."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score as A
import tomohet.methods.detection as Dm
import tomohet.methods.discovery as Disc
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.focus import discovered_focus

info = []
def cr(det, scale, max_regions, alpha_more=0.05, extend=0.6, dilate=2, confirm=None, require_first=True):
    if not det.significant:
        return []
    i = int(np.argmin(np.abs(np.asarray(det.scales) - scale)))
    z = det.z_scales[i].numpy()
    lab, n = ndimage.label(z > extend * det.threshold)
    lab, n = Dm.split_clusters(z, lab, n, det.threshold)
    peaks = np.asarray(ndimage.maximum(det.z.numpy(), lab, index=np.arange(1, n + 1)))
    more = np.asarray(ndimage.maximum(confirm.z.numpy(), lab, index=np.arange(1, n + 1)))
    null = np.asarray(confirm.null)
    p = (1 + (null[None, :] >= more[:, None]).sum(1)) / (len(null) + 1)
    out = []
    for c in np.argsort(-peaks, kind="stable"):
        grown = ndimage.binary_dilation(lab == c + 1, iterations=dilate)
        info.append((int(c), float(peaks[c]), float(more[c]), float(p[c]), int((lab == c + 1).sum())))
        out.append(Dm.soft_region(grown))
    print(f"  threshold {det.threshold:.2f} confirm threshold {confirm.threshold:.2f} scale {scale}")
    return out
Disc.candidate_regions = cr
Disc.n_regions_for = lambda k: 99
for spec in sys.argv[1:]:
    m, s, n = spec.split(":")
    info.clear()
    ds = simulate_cell(LadderCell(float(m), float(s), int(n)), 0, {})
    names = ds.truth["state_name"].to_numpy()
    hasA = np.array(["A" in x for x in names]); hasB = np.array(["B" in x for x in names])
    print(spec, flush=True)
    focus, d = discovered_focus(ds.particles, 4, 0, 64, torch.device("cpu"))
    for (c, pk, mo, p, size), r, lab in zip(info, d.regions, d.region_labels):
        print(f"  cluster {c}: peak {pk:.1f} confirm {mo:.1f} p {p:.3f} voxels {size} mask {int((r > 0.5).sum())}"
              f"  ARI A {A(hasA, lab):.3f} B {A(hasB, lab):.3f}")
    labs = d.region_labels
    for i in range(len(labs)):
        print("  ", " ".join(f"{A(labs[i], labs[j]):.2f}" for j in range(len(labs))))

"""Does any selected region's dilation reach the core of a later cluster? (ladder cells)"""
import sys, numpy as np, torch
torch.set_num_threads(1)
from scipy import ndimage
import tomohet.methods.detection as Dm
import tomohet.methods.discovery as Disc
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.focus import discovered_focus
orig_split = Dm.split_clusters
hits = []
def cr(det, scale, max_regions, alpha_more=0.05, extend=0.6, dilate=2, confirm=None, require_first=True):
    out = ORIG(det, scale, max_regions, alpha_more, extend, dilate, confirm, require_first)
    # recompute the clusters and check overlaps of dilations with later cores
    i = int(np.argmin(np.abs(np.asarray(det.scales) - scale)))
    z = det.z_scales[i].numpy()
    lab, n = ndimage.label(z > extend * det.threshold)
    if n:
        lab, n = orig_split(z, lab, n, det.threshold)
        for r in out:
            core_in = np.unique(lab[(r.numpy() > 0.5) & (lab > 0)])
            if len(core_in) > 1:
                hits.append(len(core_in))
    return out
ORIG = Dm.candidate_regions
Disc.candidate_regions = cr
for spec in sys.argv[1:]:
    m, s, n = spec.split(":")
    hits.clear()
    ds = simulate_cell(LadderCell(float(m), float(s), int(n)), 0, {})
    focus, d = discovered_focus(ds.particles, 4, 0, 64, torch.device("cpu"))
    print(spec, "regions", len(d.regions), "regions holding >1 cluster core:", hits, flush=True)

"""Discovery's regions with and without the start-agreement rule on ladder cells: the
regions' two-class starts against the true components, and whether the masks changed
(a cell whose regions are unchanged needs no rerun). Usage: compare.py m:s:n ..."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from sklearn.metrics import adjusted_rand_score as A
import tomohet.methods.discovery as Disc
import tomohet.methods.regions as Rg
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.focus import discovered_focus

rec = {}
def cr(det, scale, max_regions, **kw):
    start = kw.pop("start", None)
    rec["old"] = Rg.candidate_regions(det, scale, max_regions, **kw)
    rec["new"] = Rg.candidate_regions(det, scale, max_regions, start=start, **kw)
    rec["old_l"] = [start(r) for r in rec["old"]]
    rec["new_l"] = [start(r) for r in rec["new"]]
    return rec["new"]
Disc.candidate_regions = cr
for spec in sys.argv[1:]:
    m, s, n = spec.split(":")
    rec.clear()
    ds = simulate_cell(LadderCell(float(m), float(s), int(n)), 0, {})
    names = ds.truth["state_name"].to_numpy()
    hasA = np.array(["A" in x for x in names]); hasB = np.array(["B" in x for x in names])
    focus, d = discovered_focus(ds.particles, 4, 0, 64, torch.device("cpu"))
    if "old" not in rec:
        print(spec, "region", d.region, "(no regions drawn)", flush=True)
        continue
    same = len(rec["old"]) == len(rec["new"]) and all(
        torch.equal(a, b) for a, b in zip(rec["old"], rec["new"]))
    def aris(labs):
        return [f"{A(hasA, l):.2f}/{A(hasB, l):.2f}" for l in labs]
    print(spec, "unchanged" if same else "CHANGED", "old", aris(rec["old_l"]),
          "new", aris(rec["new_l"]), flush=True)

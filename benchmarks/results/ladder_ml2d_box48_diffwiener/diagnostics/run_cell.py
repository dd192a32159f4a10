"""Run ML2D default on a ladder cell; print discovery + per-stage info + crosstab."""
import sys, time, json
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.ml import ML2D, ML3D
torch.set_num_threads(1)
import os
if os.environ.get("DW") == "0":
    import tomohet.methods.em as _em
    _em.shrink_class_differences = lambda maps, half, w, t, m: (maps, None)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
meth = sys.argv[4] if len(sys.argv) > 4 else "ml2d"
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
truth = ds.states
t0 = time.perf_counter()
cls = ML2D if meth == "ml2d" else ML3D
m = cls(n_classes=ds.n_states, random_state=0, progress=False, n_iter=12, n_restarts=2, restart_iters=3).fit(ds.particles)
d = m.discovery_
print("discovery", json.dumps(d.summary()))
print("regions", len(d.regions), [float(r.mean()) for r in d.regions])
hist = m.history_ if hasattr(m, "history_") else []
stages = {}
for h in hist:
    stages.setdefault((h.get("stage"), h.get("region"), h.get("split_class")), 0)
    stages[(h.get("stage"), h.get("region"), h.get("split_class"))] += 1
print("stages", stages)
lab = m.labels_
print("ARI", round(adjusted_rand_score(truth, lab), 3), "wall", round(time.perf_counter() - t0, 1))
ct = np.zeros((ds.n_states, m.n_classes), int)
for t, l in zip(truth, lab): ct[t, l] += 1
print(ct)

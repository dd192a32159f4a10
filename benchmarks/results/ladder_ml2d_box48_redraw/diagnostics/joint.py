"""After the region splits: a joint K-class focused EM on the union of the regions, from the combined labels."""
import sys, time
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.ml import ML2D
from tomohet.methods.region_test import focused_fit
torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
p = ds.particles; s = np.asarray(ds.states)
t0 = time.perf_counter()
m = ML2D(n_classes=4, random_state=0, progress=False).fit(p)
print("pipeline ARI", round(ari(s, m.labels_), 3), "t", round(time.perf_counter() - t0)); sys.stdout.flush()
found = m.discovery_
masks = list(found.regions) + [found.candidates[t["candidate"]][0] for t in found.region_tests if t.get("accepted")]
union = torch.stack(masks).amax(0)
print("masks", len(masks), "union frac", round(float(union.mean()), 4))
setup = m.setup_
keep = np.arange(len(setup.plain.index))
halves = half_sets(p.names, p.tomo_names, 0, p.table)[setup.plain.index]
labels = m.labels_[setup.plain.index]
for tf in (None,):
    mod = ML2D(n_classes=4, random_state=0, progress=False, n_restarts=1)
    st = focused_fit(mod, setup, p, keep, union.to(setup.plain.device), labels, halves)
    lab = st.posteriors.argmax(1)
    print("joint ARI", round(ari(s[setup.plain.index], lab), 3), "pri", st.priors.numpy().round(2), "iters", len(st.history), "t", round(time.perf_counter() - t0))
    print([round(h.get("log_likelihood", 0), 1) for h in st.history])

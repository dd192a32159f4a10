"""Oracle vs ml2d: marginal accuracy on component A and B of a ladder cell."""
import sys, time, json
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.oracle import run_oracle
from tomohet.methods.ml import ML2D
torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
t0 = time.perf_counter()
o = run_oracle(ds)
P = o.state_posteriors
pa = P[:, [0, 1]].sum(1); pb = P[:, [0, 2]].sum(1)
oa, ob = (pa > .5).astype(int), (pb > .5).astype(int)
print("oracle ARI4", round(ari(s, o.labels), 3), "accA", round((oa == A).mean(), 3), "accB", round((ob == B).mean(), 3),
      "ARI4(oracleA only)", round(ari(s, oa), 3), "ARI4(oracleA x oracleB)", round(ari(s, oa * 2 + ob), 3), "t", round(time.perf_counter() - t0))
np.savez("oracle_%s_%s_%s.npz" % (mass, snr, n), P=P, s=s)
m = ML2D(n_classes=4, random_state=0, progress=False).fit(ds.particles)
lab = m.labels_; post = m.posteriors_ if hasattr(m, "posteriors_") else None
print("ml2d ARI4", round(ari(s, lab), 3), "regions", len(m.discovery_.regions))
ct = np.zeros((4, 4), int)
for t, l in zip(s, lab): ct[t, l] += 1
print(ct)
# best A grouping of our classes: class -> A if majority of its members are A
amap = np.array([A[lab == c].mean() > .5 if (lab == c).any() else 0 for c in range(4)]).astype(int)
ours_a = amap[lab]
print("ours accA", round((ours_a == A).mean(), 3), "ARI4(oursA only)", round(ari(s, ours_a), 3),
      "ARI4(oursA x oracleB)", round(ari(s, ours_a * 2 + ob), 3), "t", round(time.perf_counter() - t0))
np.save("ml2d_%s_%s_%s.npy" % (mass, snr, n), lab)

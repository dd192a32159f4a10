"""ml3d on a ladder cell with the subtomogram noise power scaled by C (tempering the
E-step's log-likelihood by 1/C): is ml3d over-confident at low SNR?"""
import sys, time, json, os
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.ml import ML3D
import tomohet.physics.forward as fw
torch.set_num_threads(1)
C = float(os.environ.get("C", "1"))
_orig = fw.NoiseModel.update
def update(self, *a, **k):
    _orig(self, *a, **k)
    if self.ndim == 3:
        self._sigma2 = self._sigma2 * C
fw.NoiseModel.update = update
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
t0 = time.perf_counter()
m = ML3D(n_classes=ds.n_states, random_state=0, progress=False, n_iter=12, n_restarts=2, restart_iters=3).fit(ds.particles)
print("C", C, "discovery", json.dumps({k: v for k, v in m.discovery_.summary().items() if k in ("region", "max_z", "threshold", "n_regions")}))
lab = m.labels_
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
print("ARI", round(adjusted_rand_score(s, lab), 3), "wall", round(time.perf_counter() - t0, 1), flush=True)
ct = np.zeros((ds.n_states, m.n_classes), int)
for t, l in zip(s, lab): ct[t, l] += 1
print(ct)

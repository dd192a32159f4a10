"""Oracle marginal accuracy per factor (A, B) on a ladder cell."""
import sys
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score as ari
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.datasets import BenchDataset
from tomohet.bench.oracle import run_oracle
torch.set_num_threads(1)
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
s = np.asarray(ds.states); A = np.isin(s, [0, 1]).astype(int); B = np.isin(s, [0, 2]).astype(int)
res = run_oracle(ds)
sp = res.state_posteriors
pA = sp[:, 0] + sp[:, 1]; pB = sp[:, 0] + sp[:, 2]
a = (pA > 0.5).astype(int); b = (pB > 0.5).astype(int)
print("oracle ARI4", round(ari(s, res.labels), 3))
print("A acc", round((a == A).mean(), 3), "B acc", round((b == B).mean(), 3))
print("A-only ARI4", round(ari(s, a), 3), "B-only", round(ari(s, b), 3), "A*2+B", round(ari(s, a * 2 + b), 3))
np.savez(f"/work/diag/s8/oracle_{mass}_{snr}_{n}.npz", sp=sp, s=s)

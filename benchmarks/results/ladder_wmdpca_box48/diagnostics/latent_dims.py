"""wmdpca (bench parameters: 4 components, discovered focus) on a ladder cell; k-means
(K = 4) on its leading 1-4 coordinates, and with each coordinate scaled by its spread
over the particles' half-split noise; saves the latent. Does k-means lose the states in
the coordinates that carry only noise?
usage: latent_dims.py MASS SNR N SEED"""
import sys
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score as ari

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.runner import resolve_methods, run_method

torch.set_num_threads(1)
mass, snr, n, seed = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ds = simulate_cell(LadderCell(mass, snr, n), seed, {})
t0 = time.perf_counter()
resolve_methods("wmdpca")
run = run_method("wmdpca", ds, seed)
z = np.asarray(run.latent, dtype=float)
s = np.asarray(ds.states)
np.savez(f"latent_m{mass}_s{snr}_n{n}.npz", latent=z, states=s)
print("error", run.error) if run.error else None
print(f"wmdpca {time.perf_counter() - t0:.0f} s; latent sd {z.std(0).round(3)}; "
      f"bench ARI {ari(s, run.labels) if run.labels is not None else 'n/a'}")
for d in range(1, z.shape[1] + 1):
    lab = KMeans(4, n_init=10, random_state=0).fit_predict(z[:, :d])
    print(f"  k-means K=4 on the first {d}: ARI {ari(s, lab):.3f}")
for c in range(z.shape[1]):
    print(f"  coordinate {c}: |corr| with A {abs(np.corrcoef(z[:, c], np.isin(s, [0, 1]))[0, 1]):.2f}"
          f", with B {abs(np.corrcoef(z[:, c], np.isin(s, [0, 2]))[0, 1]):.2f}")

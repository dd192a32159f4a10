import sys, numpy as np, torch
torch.set_num_threads(1)
from sklearn.metrics import adjusted_rand_score as A
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.focus import discovered_focus
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
names = ds.truth["state_name"].to_numpy()
hasA = np.array(["A" in s for s in names]); hasB = np.array([("B" in s) for s in names])
print("states", dict(zip(*np.unique(names, return_counts=True))))
focus, d = discovered_focus(ds.particles, 4, 0, 64, torch.device("cpu"))
print("region", d.region, "n regions", len(d.regions), "scale", d.scale)
for i, (r, lab) in enumerate(zip(d.regions, d.region_labels)):
    print(f"region {i}: voxels>0.5 {int((r > 0.5).sum())}  ARI vs A {A(hasA, lab):.3f}  vs B {A(hasB, lab):.3f}  pops {np.bincount(lab)}")
print("labels (K=4) ARI vs states", A(names, d.labels))
print("candidates", len(d.candidates))
for i, (m, fold, lab) in enumerate(d.candidates):
    print(f"cand {i}: voxels>0.5 {int((m > 0.5).sum())} ARI vs A {A(hasA, lab):.3f} vs B {A(hasB, lab):.3f}")

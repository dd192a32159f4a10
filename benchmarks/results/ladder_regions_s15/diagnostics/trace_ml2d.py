"""ml2d on one ladder cell as the bench runs it (bench_params, K = 4, seed 0), tracing the
region splits: each split's (and redraw's) ARI against the true components A and B, the
mask's fraction of the box, and which splits _redundant drops. Usage: trace_ml2d.py M S N"""
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from sklearn.metrics import adjusted_rand_score as A
import tomohet.methods.factorial as F
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods import REGISTRY, load_all
load_all()

mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
names = ds.truth["state_name"].to_numpy()
hasA = np.array(["A" in s for s in names]); hasB = np.array(["B" in s for s in names])
def tag(lab):
    return f"A {A(hasA, lab):.3f} B {A(hasB, lab):.3f} pops {np.bincount(lab, minlength=2)}"
orig_split_fn = F._refined_split
def refined(setup, split, mask, init, redraw, exclude, max_redraws=F.MAX_REDRAWS):
    print(f"region start: {tag(init)} mask {float(mask.mean()):.4f}", flush=True)
    def traced(members, m, i):
        post, hist, s2 = split(members, m, i)
        if len(members) == len(names):
            print(f"  split in mask {float(m.mean()):.4f}: {tag(post.argmax(1))}", flush=True)
        return post, hist, s2
    out = orig_split_fn(setup, traced, mask, init, redraw, exclude, max_redraws)
    return out
F._refined_split = refined
orig_red = F._redundant
def red(post, posts, limit=0.5):
    r = orig_red(post, posts, limit)
    print(f"  redundant with: {r}", flush=True)
    return r
F._redundant = red
cls = REGISTRY["ml2d"]
params = {**cls.bench_params, "n_classes": 4, "random_state": 0, "progress": False}
m = cls(**params).fit(ds.particles)
print("final ARI", A(names, m.labels_))
print(json.dumps(m.discovery_.summary() if getattr(m, "discovery_", None) else {}, default=str)[:3000])

"""Ladder cell with the region masks redrawn up to R times (monkeypatched _refined_split)."""
import sys, time, json
import numpy as np, torch
from sklearn.metrics import adjusted_rand_score
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods import factorial
from tomohet.methods.ml import ML2D
torch.set_num_threads(1)
mass, snr, n, R = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def _refined_split(setup, split, mask, init, redraw, exclude):
    everyone = np.arange(len(setup.plain.index))
    post, hist, sigma2 = split(everyone, mask, init)
    history = [dict(h, stage="region split", region_fraction_of_box=float(mask.mean())) for h in hist]
    for r in range(R):
        new = None if redraw is None else redraw(post, mask, exclude)
        if new is None: break
        dice = float(2 * (new * mask).sum() / (new.sum() + mask.sum()))
        print("  redraw", r, "frac", round(float(mask.mean()), 4), "->", round(float(new.mean()), 4), "dice", round(dice, 3)); sys.stdout.flush()
        if dice > 0.9 and r > 0: break
        mask = new
        post, hist, sigma2 = split(everyone, mask, post.argmax(1))
        history = [dict(h, stage="region search") for h in history] + [dict(h, stage="region split", region_fraction_of_box=float(mask.mean())) for h in hist]
    return post, history, sigma2, mask
factorial._refined_split = _refined_split
ds = simulate_cell(LadderCell(mass, snr, n), 0, {})
t0 = time.perf_counter()
m = ML2D(n_classes=ds.n_states, random_state=0, progress=False, n_iter=12, n_restarts=2, restart_iters=3).fit(ds.particles)
print("discovery", json.dumps(m.discovery_.summary()))
lab = m.labels_
print("ARI", round(adjusted_rand_score(ds.states, lab), 3), "wall", round(time.perf_counter() - t0, 1))
ct = np.zeros((ds.n_states, m.n_classes), int)
for a, b in zip(ds.states, lab): ct[a, b] += 1
print(ct)

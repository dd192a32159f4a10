"""vae on one ladder cell with parameter variants: ARI of the bench's k-means K = #states."""
import sys, time, json, torch
torch.set_num_threads(1)
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.runner import run_method, resolve_methods
from tomohet.bench.scoring import score_run
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
import os
ov = {"box": int(os.environ["BOX"])} if os.environ.get("BOX") else {}
ds = simulate_cell(LadderCell(mass, snr, n), 0, ov)
resolve_methods(["vae"])
for a in sys.argv[4:]:
    params = dict(json.loads(a))
    t = time.time(); run = run_method("vae", ds, 0, None, params=params); score_run(run, ds, 0)
    print(a, "ARI %.3f" % run.scores.get("ari", float("nan")), run.error, "%.0fs" % (time.time()-t), flush=True)

"""A rare state: one component (mass M) present in a fraction P of the particles
(ladder1 preset, the states' fractions changed), ml2d (K = 2) against the oracle.
usage: rare.py MASS SNR N P [seed]"""
import copy, sys, time, torch
torch.set_num_threads(1)
from tomohet.bench.presets import simulate_presets
from tomohet.bench.runner import resolve_methods, run_method, run_oracle_row
from tomohet.bench.scoring import score_run
from tomohet.sim.presets import get_preset, ladder_name
mass, snr, n, p = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
name = ladder_name(mass, snr, n, 1)
structure = copy.deepcopy(get_preset(name).structure)
structure["states"] = [{"name": "A", "components": ["A"], "fraction": p},
                       {"name": "core", "components": [], "fraction": 1 - p}]
ds = simulate_presets([name], seed=seed, overrides={"structure": structure})[0]
print(name, "P(A) =", p, "seed", seed, "counts", ds.truth["state"].value_counts().to_dict(), flush=True)
resolve_methods(["ml2d"])
for meth in ("oracle", "ml2d"):
    t = time.time()
    run = run_oracle_row(ds, seed) if meth == "oracle" else run_method(meth, ds, seed)
    score_run(run, ds, seed)
    s = run.scores
    print(f"{meth:7s} ARI {s.get('ari', float('nan')):.3f} acc {s.get('accuracy', float('nan')):.3f} "
          f"pop_err {s.get('pop_err_max', float('nan')):.3f} {run.error or ''} {time.time() - t:.0f}s", flush=True)

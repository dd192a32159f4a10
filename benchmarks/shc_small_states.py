"""Why joint SHC misses small components (issue 12 diagnostic, ladder cells).

Variants on one ladder cell (all with the bench parameters of SHC: n_iter 10, one run
unless ``--runs``), discovery computed once and shared:

* ``joint``: the joint K-class climb from discovery's focus and components (the old
  default, ``split="joint"``);
* ``truth``: the same joint climb started from the true labels (an oracle start): does
  it stay, or drift?
* ``truth-noanneal``: the same, without annealing (``anneal_iters=0``);
* ``regions``: the region-by-region path (``split="regions"``).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/shc_small_states.py \
        --mass 0.05 --snr 0.3 --variants joint,truth,truth-noanneal

One JSON line per variant in ``benchmarks/results/small_states/shc.jsonl``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import small_states  # benchmarks/ is on sys.path when a script here is run
import torch
from sklearn.metrics import adjusted_rand_score

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods import shc as shc_module
from tomohet.methods.shc import SHC


def shared_discovery():
    """discover_with, computed on the first call and reused (same data, same seed)."""
    real = shc_module.discover_with
    cache: dict = {}

    def wrapped(engine, *args, **kw):
        if "setup" not in cache:
            cache["setup"] = real(engine, *args, **kw)
        return cache["setup"]

    return wrapped


class TruthStart(SHC):
    """SHC whose every run starts from given labels (an oracle start)."""

    start: np.ndarray

    def _keyed_labels(self, engine, seed, stream):
        return self.start[engine.index].copy()


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mass", type=float, default=0.05)
    p.add_argument("--snr", type=float, default=0.3)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--variants", default="joint,truth,truth-noanneal,regions")
    args = p.parse_args()
    cell = LadderCell(args.mass, args.snr, args.n)
    ds = simulate_cell(cell, 0, {})
    truth, k = np.asarray(ds.states), ds.n_states
    shc_module.discover_with = shared_discovery()
    base = dict(n_classes=k, n_iter=10, n_runs=args.runs, anneal_iters=4, progress=False,
                random_state=0)
    for v in args.variants.split(","):
        t0 = time.perf_counter()
        if v.startswith("truth"):
            m: SHC = TruthStart(**{**base, "split": "joint",
                                   **({"anneal_iters": 0} if v == "truth-noanneal" else {})})
            m.start = truth
        else:
            m = SHC(**base, split=v)
        m.fit(ds.particles)
        rec = {"cell": cell.name, "variant": v, "k": k,
               "ari": round(adjusted_rand_score(truth, m.labels_), 3),
               "ari_consistent": round(adjusted_rand_score(truth[m.consistent_],
                                                           m.labels_[m.consistent_]), 3),
               "kept": round(float(m.consistent_.mean()), 3),
               "populations": np.bincount(m.labels_, minlength=k).tolist(),
               "wall_s": round(time.perf_counter() - t0, 1)}
        found = m.discovery_
        if found is not None and len(found.labels) == len(truth):
            rec["discovery_init_ari"] = round(adjusted_rand_score(truth, found.labels), 3)
            rec["n_regions"] = len(found.regions)
        hist = m.history_[0] if m.history_ else []
        rec["trace"] = [[h.get("iteration"), h.get("region"), h.get("changed_fraction"),
                         h.get("populations")] for h in hist]
        small_states.log("shc", rec)


if __name__ == "__main__":
    main()

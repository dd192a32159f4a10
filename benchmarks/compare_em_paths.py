"""Whole ml2d fits with the dense EM path, the compact path and compact + current size.

Prints one JSON line per path: ARI against the simulation's truth, iterations, seconds.
Run: ``python benchmarks/compare_em_paths.py --n 300 --box 32 --preset discrete-easy``.
Nothing is asserted (issue 14; see benchmarks/README.md, "Speed of the EM core").
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from tomohet.methods.ml import ML2D
from tomohet.sim import simulate
from tomohet.sim.presets import get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--preset", default="discrete-easy")
    ap.add_argument("--margin", type=int, default=4, help="current_size_margin (shells)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paths", default="dense,compact,current-size",
                    help="comma-separated subset of dense, compact, current-size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = simulate(get_preset(args.preset, n_particles=args.n, box=args.box,
                             n_tilts=args.tilts), seed=1)
    truth = ds.truth["state"].to_numpy()
    k = len(np.unique(truth))
    original = ML2D._config
    chosen = args.paths.split(",")
    paths = [(name, compact, margin) for name, compact, margin in (
        ("dense", False, None), ("compact", True, None),
        ("current-size", True, args.margin)) if name in chosen]
    try:
        for name, compact, margin in paths:
            def config(self, device, compact=compact, margin=margin):
                cfg = original(self, device)
                cfg.compact, cfg.current_size_margin = compact, margin
                return cfg

            ML2D._config = config  # type: ignore[method-assign]
            t0 = time.perf_counter()
            m = ML2D(n_classes=k, random_state=0, progress=False).fit(ds.particles)
            print(json.dumps({
                "path": name, "margin": margin, "preset": args.preset, "n": args.n,
                "box": args.box, "K": k,
                "ari": round(adjusted_rand_score(truth, m.predict()), 4),
                "iterations": len(m.history_),
                "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    finally:
        ML2D._config = original  # type: ignore[method-assign]


if __name__ == "__main__":
    main()

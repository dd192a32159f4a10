"""Seconds per SHC iteration (scoring pass + re-averaging of the class references).

Default: 300 particles x 41 tilts, box 32, K = 4, one thread (issue 14). A fit with
``--iters-a`` iterations and one with ``--iters-b`` are timed on the same simulated set;
their difference divided by the iteration difference is the time per iteration (the
initial and final reconstructions cancel). The temperature stays above 0 throughout, so
no fit stops early. ``--paths compact,cached,dense`` times SHC's compacted passes, the
same with the geometry cache (``--cache-mb``; plans kept across iterations) and the
dense reference alternately in one process (same load for all; ``cached`` and ``dense``
need an SHC with the ``compact`` flag) and prints how far their labels differ. Prints a
table and a JSON line per run; nothing is asserted.

Run: ``python benchmarks/bench_shc.py [--n 300] [--box 32] [--k 4] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time

import numpy as np
import torch

from tomohet.methods.shc import SHC


def synthetic_set(n: int, box: int, n_tilts: int, seed: int):
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("discrete-realistic", n_particles=n, box=box, n_tilts=n_tilts)
    return simulate(cfg, seed=seed).particles


def fit_seconds(particles, k: int, n_iter: int, path: str, device: str, cache_mb: float
                ) -> tuple[float, np.ndarray]:
    params = dict(n_classes=k, n_iter=n_iter, n_runs=1, temperature=10.0, anneal_iters=1000,
                  init="random", focus_mask=None, progress=False, random_state=0,
                  device=device)
    if "compact" in inspect.signature(SHC).parameters:
        params["compact"] = path != "dense"
        params["cache_geometry_mb"] = cache_mb if path == "cached" else 0.0
    elif path != "compact":
        raise SystemExit("this SHC has no `compact` flag: only the default path can be timed")
    t0 = time.perf_counter()
    model = SHC(**params).fit(particles)
    return time.perf_counter() - t0, model.predict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--iters-a", type=int, default=1)
    ap.add_argument("--iters-b", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--subtomo", action="store_true", help="subtomograms instead of tilts")
    ap.add_argument("--paths", default="compact",
                    help="comma-separated: compact, cached, dense")
    ap.add_argument("--cache-mb", type=float, default=8000.0,
                    help="geometry cache budget of the cached path (MB)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over --paths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    particles = synthetic_set(args.n, args.box, args.tilts, seed=0)
    if args.subtomo:
        from tomohet.data.subtomo_cache import subtomograms_from_tilts

        particles = subtomograms_from_tilts(particles, progress=False, device=args.device)
    labels: dict[str, np.ndarray] = {}
    print(f"{'path':>8} {'round':>5} {'fit a (s)':>10} {'fit b (s)':>10} {'s/iter':>8}  load")
    for rnd in range(args.repeat):
        for path in args.paths.split(","):
            ta, _ = fit_seconds(particles, args.k, args.iters_a, path, args.device,
                                args.cache_mb)
            tb, lab = fit_seconds(particles, args.k, args.iters_b, path, args.device,
                                  args.cache_mb)
            per_iter = (tb - ta) / (args.iters_b - args.iters_a)
            load = os.getloadavg()[0]
            labels[path] = lab
            print(f"{path:>8} {rnd:>5} {ta:>10.1f} {tb:>10.1f} {per_iter:>8.2f}  {load:.2f}")
            print(json.dumps({"path": path, "round": rnd, "n": args.n, "box": args.box,
                              "tilts": args.tilts, "k": args.k, "threads": args.threads,
                              "subtomo": args.subtomo, "fit_a_s": ta, "fit_b_s": tb,
                              "iters": [args.iters_a, args.iters_b],
                              "s_per_iter": per_iter, "load1": load}))
    first = next(iter(labels))
    for path, lab in labels.items():
        if path != first:
            diff = int((lab != labels[first]).sum())
            print(f"labels differing between {first} and {path}: {diff} of {len(lab)}")


if __name__ == "__main__":
    main()

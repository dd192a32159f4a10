"""Seconds per EM iteration of ml2d / ml3d / occupancy, with the time split by stage.

Default: 2,000 particles x 41 tilts, box 48, K = 4 (the figure asked for in the issue).
Run: ``python benchmarks/bench_ml.py [--n 2000] [--box 48] [--k 4] [--threads 2]``.
``--paths compact,dense --repeat 2`` times the compacted hot path (issue 14) and the
dense reference alternately on the same data in one process (same load for both), and
prints how far their posteriors differ. Prints a table and a JSON line per run; nothing
is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from tomohet.data.keys import half_sets
from tomohet.methods.em import EMConfig, EMEngine, EMState


def synthetic_set(n: int, box: int, n_tilts: int, seed: int):
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("discrete-realistic", n_particles=n, box=box, n_tilts=n_tilts)
    return simulate(cfg, seed=seed).particles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--box", type=int, default=48)
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--subtomo", action="store_true", help="time ml3d instead of ml2d")
    ap.add_argument("--paths", default="compact",
                    help="comma-separated: compact (EMConfig.compact=True), dense (reference), "
                         "current-size (compact + EMConfig.current_size_margin), cached "
                         "(current-size with the geometry cache: one pass fills it, the "
                         "next is timed)")
    ap.add_argument("--cache-mb", type=float, default=16000.0,
                    help="geometry cache budget of the cached path (MB)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over --paths")
    ap.add_argument("--current-size-margin", type=int, default=4,
                    help="shells past the class FSC limit for the current-size path")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="run each timed iteration under cProfile and print its N most "
                         "expensive functions (cumulative and own time)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    particles = synthetic_set(args.n, args.box, args.tilts, seed=0)
    t_sim = time.perf_counter() - t0
    if args.subtomo:
        from tomohet.data.subtomo_cache import subtomograms_from_tilts

        t0 = time.perf_counter()
        particles = subtomograms_from_tilts(particles, progress=False, device=args.device)
        print(f"subtomogram reconstruction: {time.perf_counter() - t0:.1f}s")
    n = particles.n_particles
    cfg = EMConfig(n_classes=args.k, batch_size=args.batch_size, device=args.device,
                   current_size_margin=args.current_size_margin)  # for current_shell below
    engine = EMEngine(particles, cfg, np.arange(n))
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    rng = np.random.default_rng(0)
    weights = np.eye(args.k)[rng.integers(0, args.k, n)]
    vols, curves, res = engine.volumes_from(engine.reconstruct_pass(weights, None, halves))
    noise = engine.noise_pass(vols.mean(0, keepdim=True), np.zeros(n, dtype=np.int64))
    state = EMState(volumes=vols, priors=torch.full((args.k,), 1 / args.k),
                    sigma2=noise.sigma2, posteriors=weights, fsc=curves)
    print(f"class resolutions (FSC 0.143): {[round(r, 1) for r in res]} A; current-size "
          f"path limited to shell {engine.current_shell(curves)} of {args.box // 2}")
    posteriors = {}
    for _ in range(args.repeat):
        for path in args.paths.split(","):
            engine.cfg.compact = path in ("compact", "current-size", "cached")
            engine.cfg.current_size_margin = (args.current_size_margin
                                              if path in ("current-size", "cached") else None)
            engine.geometry = None
            if path == "cached":
                from tomohet.methods.em_cache import GeometryCache

                engine.geometry = GeometryCache(args.cache_mb)
                engine.em_pass(state, halves)  # fills the cache (untimed)
            res, posteriors[path] = _timed_iteration(engine, state, halves, args.profile)
            if engine.geometry is not None:
                res["cache_mb"] = engine.geometry.used / 2**20
                res["cached_batches"] = len(engine.geometry)
            res = {"particles": n, "tilts": args.tilts, "box": args.box, "classes": args.k,
                   "threads": args.threads, "device": args.device, "path": path,
                   "geometry": "subtomo" if args.subtomo else "tilt", "simulate_s": t_sim,
                   **res}
            total = res["iteration_s"]
            for k, v in res.items():
                share = f"  ({100 * v / total:4.1f}%)" if k.endswith("_s") and k not in (
                    "iteration_s", "simulate_s") else ""
                print(f"{k:>20}: {v:.2f}{share}" if isinstance(v, float) else f"{k:>20}: {v}")
            print(json.dumps(res), flush=True)
    if len(posteriors) > 1:
        first, *others = posteriors
        for other in others:
            diff = np.abs(posteriors[first] - posteriors[other]).max()
            print(f"max |posterior difference| {first} vs {other}: {diff:.2e}")


def _timed_iteration(engine: EMEngine, state: EMState, halves: np.ndarray,
                     profile: int = 0):
    """One E+M pass and the class maps from it -> (timings, posteriors)."""
    for key in engine.timings:
        engine.timings[key] = 0.0
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    bp, _, post, _ = engine.em_pass(state, halves)
    t_pass = time.perf_counter() - t0
    if prof is not None:
        import pstats

        prof.disable()
        for key in ("cumulative", "tottime"):
            pstats.Stats(prof).sort_stats(key).print_stats(profile)
    t0 = time.perf_counter()
    engine.volumes_from(bp)
    t_recon = time.perf_counter() - t0
    return {"iteration_s": t_pass + t_recon,
            **{f"{k}_s": v for k, v in engine.timings.items()},
            "reconstruct_maps_s": t_recon}, post


if __name__ == "__main__":
    main()

"""Benchmark of the linear methods (wmdpca, ccmatrix, multiscale, ppca2d).

1. Quality: on the continuous and discrete presets at both SNRs (easy 0.1, realistic
   0.02), each method's |Spearman| rank correlation with the true coordinate and its
   fraction of the oracle's (continuous), and the ARI after clustering the coordinates
   (discrete): k-means with the true K (as ``tomohet bench`` scores it) plus this
   package's GMM (true K and BIC-suggested K) and Ward.
2. Scaling: wall time and peak memory of wmdpca and ppca2d against N on the demo preset.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_linear.py --quick --out bench_linear/
    .venv/bin/python benchmarks/bench_linear.py --device cuda:0 --out bench_linear/   # full

Writes ``quality.csv``, ``scaling.csv`` and ``bench_linear.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

QUALITY_PRESETS = ["continuous-easy", "continuous-realistic", "discrete-easy",
                   "discrete-realistic"]
METHODS = ["wmdpca", "ccmatrix", "multiscale", "ppca2d"]


def _simulate(preset: str, seed: int, **overrides: Any):
    from tomohet.bench.datasets import from_simulated
    from tomohet.sim import get_preset, simulate

    return from_simulated(simulate(get_preset(preset, **overrides), seed=seed), preset)


def _cluster_scores(latent: np.ndarray, states: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score

    from tomohet.analysis.clustering import cluster_latent

    k = len(np.unique(states))
    out: dict[str, float] = {}
    for method in ("gmm", "ward"):
        res = cluster_latent(latent, method=method, n_clusters=k, seed=seed)
        out[f"ari_{method}"] = adjusted_rand_score(states, res.labels)
    res = cluster_latent(latent, method="gmm", n_clusters=None, seed=seed)
    out["ari_gmm_bic"] = adjusted_rand_score(states, res.labels)
    out["bic_k"] = res.n_clusters
    return out


def quality(presets: list[str], methods: list[str], seed: int, device: torch.device,
            overrides: dict[str, Any]) -> pd.DataFrame:
    from tomohet.bench.runner import run_method, run_oracle_row
    from tomohet.bench.scoring import oracle_fractions, score_run
    from tomohet.methods import load_all

    load_all()
    rows = []
    for preset in presets:
        t0 = time.perf_counter()
        ds = _simulate(preset, seed, **overrides)
        print(f"[quality] {preset}: {ds.n_particles} particles simulated in "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
        oracle = run_oracle_row(ds, seed, device)
        score_run(oracle, ds, seed)
        runs = [oracle] + [run_method(m, ds, seed, device) for m in methods]
        for run in runs[1:]:
            score_run(run, ds, seed)
            if not run.error and not oracle.error:
                run.scores.update(oracle_fractions(run.scores, oracle.scores))
        for run in runs:
            row = {"preset": preset, "method": run.method, "n": ds.n_particles,
                   "error": run.error or "", **run.scores,
                   "wall_s": run.resources.get("wall_s"),
                   "peak_mem_MB": run.resources.get("peak_mem_MB")}
            if run.latent is not None and ds.n_states > 1 and run.method != "oracle":
                row.update(_cluster_scores(run.latent, ds.states, seed))
            rows.append(row)
            keys = ("rank_corr", "rank_corr_frac_oracle", "ari", "ari_gmm", "fsc_auc")
            print(f"[quality] {preset:<22} {run.method:<10} "
                  + "  ".join(f"{k}={row[k]:.3f}" for k in keys
                              if isinstance(row.get(k), float))
                  + f"  {row['wall_s']:.1f}s" + (f"  ERROR {run.error}" if run.error else ""),
                  flush=True)
    return pd.DataFrame(rows)


def scaling(sizes: list[int], methods: list[str], seed: int, device: torch.device,
            ppca_iter: int, n_tilts: int | None) -> pd.DataFrame:
    from tomohet.bench.memory import measure
    from tomohet.methods import get_method

    rows = []
    for n in sizes:
        over: dict[str, Any] = {"n_particles": n}
        if n_tilts:
            over["n_tilts"] = n_tilts
        ds = _simulate("demo", seed, **over)
        for name in methods:
            params: dict[str, Any] = {"cluster": None, "progress": False, "random_state": seed,
                                      "device": str(device)}
            if name == "ppca2d":
                params["n_iter"] = ppca_iter
            model = get_method(name, **params)
            with measure(device) as stats:
                model.fit(ds.particles)
            row = {"method": name, "n": n, "tilts": ds.particles.n_tilts,
                   "box": ds.particles.optics.box, **stats,
                   "per_particle_ms": 1000 * stats["wall_s"] / n}
            if name == "ppca2d":
                row["per_iteration_s"] = stats["wall_s"] / max(ppca_iter, 1)
            rows.append(row)
            print(f"[scaling] {name:<8} N={n:<6} {stats['wall_s']:8.1f}s  "
                  f"peak {stats['peak_mem_MB']:8.1f} MB", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_linear")
    ap.add_argument("--quick", action="store_true",
                    help="fewer particles/tilts (quality) and N = 250, 500, 1000 (scaling)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--presets", default=",".join(QUALITY_PRESETS))
    ap.add_argument("--sizes", default=None, help="N for the scaling runs (comma separated)")
    ap.add_argument("--n-particles", type=int, default=None, help="quality-run particles")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    meta: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(),
                            "quick": args.quick, "seed": args.seed}
    if not args.skip_quality:
        over: dict[str, Any] = {"n_tilts": 21, "n_particles": 400} if args.quick else {}
        if args.n_particles:
            over["n_particles"] = args.n_particles
        meta["quality_overrides"] = over
        q = quality([p for p in args.presets.split(",") if p], methods, args.seed, device, over)
        q.to_csv(out / "quality.csv", index=False)
    if not args.skip_scaling:
        sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                 else [250, 500, 1000] if args.quick else [1000, 5000, 20000])
        ppca_iter = 2 if args.quick else 8
        meta.update(sizes=sizes, ppca_iter=ppca_iter)
        s = scaling(sizes, [m for m in methods if m in ("wmdpca", "ppca2d")], args.seed,
                    device, ppca_iter, 11 if args.quick else None)
        s.to_csv(out / "scaling.csv", index=False)
    (out / "bench_linear.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()

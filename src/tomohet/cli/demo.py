"""``tomohet demo``: simulate the built-in demo data set, classify it, write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tomohet.cli.common import HelpFormatter, pick_device, prepare_out_dir, stamp_config

EXAMPLE = """example:
  tomohet demo --out tomohet_demo
  tomohet demo --out tomohet_demo --methods ml2d,shc
"""

DEFAULT_METHODS = "ml2d,shc,wmdpca,vae"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo", help="simulate a small data set, run methods on it, write a report",
        description="The whole pipeline on the built-in 'demo' preset (no download): "
        "simulate tilt-series particles with ground truth, write them as RELION 5 files, "
        "run the chosen methods, score them against the truth and the oracle, and write "
        "leaderboard.csv and report.html.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--out", default="tomohet_demo", help="output folder")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma-separated registered methods, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of simulation and methods")
    return p


def run(args: argparse.Namespace) -> int:
    from tomohet.bench.presets import simulate_presets
    from tomohet.bench.runner import run_bench
    from tomohet.methods import load_all

    t0 = time.perf_counter()
    out = prepare_out_dir(args.out)
    stamp_config(out, "demo", vars(args))
    print("[demo] simulating the 'demo' preset ...")
    datasets = simulate_presets(["demo"], seed=args.seed)
    sim = datasets[0].source
    if sim is not None and hasattr(sim, "write"):
        sim.write(Path(out) / "data")
        print(f"[demo] wrote the simulated data set (RELION 5 + truth) to {out}/data")
    load_all()
    methods = args.methods
    df = run_bench(datasets, out, methods=methods, seed=args.seed,
                   device=pick_device(args.device))
    cols = [c for c in ("method", "ari", "ari_frac_oracle", "rank_corr", "fsc_auc", "wall_s")
            if c in df.columns]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"[demo] done in {time.perf_counter() - t0:.0f}s; open {out}/report.html")
    return 0

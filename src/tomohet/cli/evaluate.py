"""``tomohet evaluate``: score any tool's classes / latents against a simulation's truth."""

from __future__ import annotations

import argparse
import json
import sys

from tomohet.cli.common import HelpFormatter

EXAMPLE = """example:
  tomohet evaluate --truth sim/truth.csv --pred ml2d/assignments.csv --out scores.json
  tomohet evaluate --truth sim/truth.csv --pred relion/run_it025_data.star

prediction columns: particle + class and/or z0, z1, ... (CSV); or STAR with
rlnClassNumber keyed by rlnTomoParticleName (or rlnGroupName)
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate", help="score predicted classes / latents against truth.csv",
        description="Match particles by name between a simulation's truth.csv and any "
        "tool's per-particle output, and report ARI, NMI, Hungarian accuracy and "
        "population error (classes) and rank correlation / neighbourhood similarity "
        "(latent coordinates; ARI after k-means when there are no classes).",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--truth", required=True, help="truth.csv written by the simulator")
    p.add_argument("--pred", required=True, help="assignments CSV or RELION-style STAR")
    p.add_argument("--out", default=None, help="write the scores as JSON here")
    p.add_argument("--seed", type=int, default=0, help="seed of the k-means on latents")
    return p


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tomohet.bench.evaluate import evaluate_predictions, read_predictions

    try:
        truth = pd.read_csv(args.truth)
        result = evaluate_predictions(truth, read_predictions(args.pred), seed=args.seed)
    except (ValueError, OSError) as exc:
        print(f"tomohet evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"matched {result['n_matched']} of {result['n_truth']} truth particles "
          f"({result['n_pred']} predicted)")
    for side in ("truth", "pred"):
        if result[f"unmatched_{side}"]:
            print(f"  {result[f'unmatched_{side}']} {side} particles unmatched, e.g. "
                  f"{', '.join(result[f'unmatched_{side}_examples'])}")
    for k, v in result["scores"].items():
        print(f"  {k:<14} {v:.4f}" if isinstance(v, float) else f"  {k:<14} {v}")
    if args.out:
        from pathlib import Path

        from tomohet.io.atomic import atomic_write_text

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0

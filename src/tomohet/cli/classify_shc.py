"""Arguments of ``tomohet classify shc`` (stochastic hill climbing, STOPGAP style)."""

from __future__ import annotations

import argparse

from tomohet.cli.common import HelpFormatter

EXAMPLE = """example:
  tomohet classify shc subtomos.star --k 3 --runs 5 --lowpass 30 --out shc/
  tomohet classify shc run_optimisation_set.star --k 2 --references a.mrc b.mrc --out shc/
"""


def add_parser(methods: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = methods.add_parser(
        "shc", help="stochastic hill climbing with annealing + consistency (STOPGAP style)",
        description="Stochastic hill climbing over classes with simulated annealing, "
        "wedge-weighted reference averaging and consistency cleaning over several runs.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="independent runs for consistency")
    p.add_argument("--iter", type=int, default=15, help="iterations per run")
    p.add_argument("--temperature", type=float, default=10.0,
                   help="initial annealing temperature T (acceptance T/100)")
    p.add_argument("--anneal-iters", type=int, default=5,
                   help="iterations over which T falls linearly to 0")
    p.add_argument("--references", nargs="+", default=None, help="K starting maps (mrc)")
    p.add_argument("--lowpass", type=float, default=None, help="low-pass of the score (A)")
    p.add_argument("--highpass", type=float, default=None, help="high-pass of the score (A)")
    p.add_argument("--mask-radius", type=float, default=None, help="reference mask radius (A)")
    p.add_argument("--local-search", type=float, default=0.0,
                   help="also try rotations of this many degrees around the prior")
    p.add_argument("--focus-mask", default="auto",
                   help="region to score: 'auto' (discovery), 'none', or a mask (mrc)")
    p.add_argument("--init", default="components", choices=("components", "random"),
                   help="first classes from the residual maps' components, or random")
    p.add_argument("--split", default="regions", choices=("regions", "joint"),
                   help="with separate regions found (focus 'auto', components start): "
                        "climb each region in two classes and combine them ('regions'), "
                        "or one K-class climb over all of them ('joint')")
    p.add_argument("--consistency", type=float, default=0.8,
                   help="flag particles agreeing in fewer runs than this fraction")
    p.add_argument("--cache-geometry", type=float, default=0.0, metavar="MB",
                   help="keep up to MB of prepared pixels and interpolation plans across "
                        "iterations and runs (same results, faster); 0 = off")
    return p


def params(args: argparse.Namespace) -> dict:
    return {
        "n_classes": args.k, "n_iter": args.iter, "n_runs": args.runs,
        "temperature": args.temperature, "anneal_iters": args.anneal_iters,
        "references": args.references, "lowpass_A": args.lowpass, "highpass_A": args.highpass,
        "mask_radius_A": args.mask_radius, "local_search_deg": args.local_search,
        "consistency_threshold": args.consistency, "batch_size": args.batch_size,
        "focus_mask": None if args.focus_mask.lower() == "none" else args.focus_mask,
        "init": args.init, "split": args.split,
    }

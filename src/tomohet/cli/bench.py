"""``tomohet bench``: every method (and the oracle ceiling) on simulated data sets."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any

from tomohet.cli.common import HelpFormatter

EXAMPLE = """example:
  tomohet bench --preset demo --out bench_demo --quick
  tomohet bench --preset demo --preset continuous --methods ml2d,occupancy --out bench
  tomohet bench --data sim_out/ --methods all --out bench_sim --seed 3
  tomohet bench --preset discrete-realistic --set n_particles=600 \\
      --methods ml2d,shc --param shc.n_runs=5 --out bench_discrete

small-component ladder (detection limit of each method; the oracle is always run):
  tomohet bench --ladder --methods ml2d --ladder-mass 0.05,0.1 --ladder-snr 0.3,0.05 \\
      --ladder-n 300 --set box=32 --out ladder
  cells are presets ladder-mMM-snrS-nN: the 70S ribosome with two removable components
  of MM% and 0.6 x MM% of its mass (4 states; --ladder-components 1: one, 2 states),
  SNR S per tilt image at 0 deg (signal: the projection before CTF), N particles; box
  48 at 12 A/px, 41 tilts +-60 deg dose-symmetric (--set box=32 for quick runs).
  Rerunning with the same --out reuses finished cells (OUT/ladder_cells/*.json).

outputs: leaderboard.csv, leaderboard.json, report.html (self-contained), config.json;
with --ladder also ladder.csv, ladder.json, ladder_ari.png, ladder_ari_frac_oracle.png
"""


# the standard ladder (tomohet.sim.presets.LADDER_*; kept here so --help imports no torch)
LADDER_DEFAULTS = {"mass": "0.02,0.05,0.1,0.3", "snr": "0.3,0.1,0.05,0.02",
                   "n": "300,1000,3000"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench", help="benchmark methods against simulated ground truth",
        description="Simulate (or load) data sets with known states, run every registered "
        "method (sklearn-style, with its bench_params), score them (ARI, NMI, accuracy, "
        "population error; rank correlation, neighbourhood similarity; per-particle FSC "
        "AUC) against the truth and against the oracle -- the Bayes classifier that knows "
        "the true volumes -- and write a leaderboard and an offline HTML report.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--preset", action="append", default=None, metavar="NAME",
                   help="simulator preset, e.g. demo, discrete, continuous, mixed (suffix "
                   "-easy / -realistic for the SNR); repeatable; default demo when no --data")
    p.add_argument("--data", action="append", default=None, metavar="DIR",
                   help="folder written by 'tomohet simulate' (with truth.csv); repeatable")
    p.add_argument("--methods", default="all",
                   help="comma-separated registered method names, or 'all'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of simulation and methods")
    p.add_argument("--quick", action="store_true",
                   help="small simulated data sets (few particles, small box) for a fast run")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle rows")
    p.add_argument("--oracle-grid", type=int, default=12,
                   help="true volumes per state along continuous coordinates for the oracle")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a simulator preset field, e.g. n_particles=600 or "
                   "box=32; repeatable")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="override a method's bench parameter, e.g. ml2d.n_iter=20 or "
                   "shc.n_runs=5; repeatable")
    g = p.add_argument_group("small-component ladder")
    g.add_argument("--ladder", action="store_true",
                   help="run the methods and the oracle over the ladder of presets "
                   "ladder-mMM-snrS-nN instead of --preset/--data; resumable")
    g.add_argument("--ladder-mass", default=LADDER_DEFAULTS["mass"], metavar="F,F",
                   help="component mass fractions (of component A; B has 0.6 x)")
    g.add_argument("--ladder-snr", default=LADDER_DEFAULTS["snr"], metavar="S,S",
                   help="SNRs per tilt image at 0 deg")
    g.add_argument("--ladder-n", default=LADDER_DEFAULTS["n"], metavar="N,N",
                   help="particle counts")
    g.add_argument("--ladder-components", type=int, default=2, choices=(1, 2),
                   help="removable components: 2 (4 states) or 1 (2 states)")
    return p


def _numbers(text: str | None, kind: type, option: str) -> list | None:
    """``"0.05,0.1"`` -> [0.05, 0.1]; None stays None. ValueError names the option."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from exc


def run_ladder_cli(args: argparse.Namespace) -> int:
    from tomohet.bench.ladder import ladder_cells, ladder_methods, run_ladder
    from tomohet.cli.common import pick_device, prepare_out_dir, stamp_config

    try:
        if args.preset or args.data or args.quick:
            raise ValueError("--ladder replaces --preset, --data and --quick "
                             "(use --set box=32 for quick runs)")
        methods = ladder_methods(args.methods)
        cells = ladder_cells(_numbers(args.ladder_mass, float, "--ladder-mass"),
                             _numbers(args.ladder_snr, float, "--ladder-snr"),
                             _numbers(args.ladder_n, int, "--ladder-n"), args.ladder_components)
        overrides = parse_assignments(args.set, dotted=False)
        params = parse_assignments(args.param, dotted=True)
    except ValueError as exc:
        print(f"tomohet bench: error: {exc}", file=sys.stderr)
        return 2
    out = prepare_out_dir(args.out)
    stamp_config(out, "bench", vars(args))
    try:
        df = run_ladder(out, methods, cells, seed=args.seed,
                        device=pick_device(getattr(args, "device", None)),
                        overrides=overrides, params=params, oracle_grid=args.oracle_grid,
                        report=not args.no_report)
    except ValueError as exc:  # e.g. a --set field the presets do not have
        print(f"tomohet bench: error: {exc}", file=sys.stderr)
        return 2
    n_err = int((df["status"] == "error").sum()) if len(df) else 0
    print(f"wrote {out / 'ladder.csv'} ({len(cells)} cells, {len(df)} rows, {n_err} errors)"
          + ("" if args.no_report else f" and {out / 'report.html'}"))
    return 0


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(items: list[str], dotted: bool) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; with ``dotted``, ``"m.k=v"`` ->
    ``{"m": {"k": v}}``. Raises ValueError naming the bad item."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        if dotted:
            method, dot, name = key.partition(".")
            if not dot or not name:
                raise ValueError(f"expected METHOD.NAME=VALUE, got {item!r}")
            out.setdefault(method, {})[name] = _value(val)
        else:
            out[key] = _value(val)
    return out


def _without_oracle(spec: str | None, no_oracle: bool) -> str | None:
    """``--methods`` without ``oracle``, which is a row of every run (not a registered
    method): ``"oracle,ml2d"`` -> ``"ml2d"``, ``"oracle"`` -> ``""`` (the oracle alone)."""
    if spec is None or "oracle" not in [m.strip() for m in spec.split(",")]:
        return spec
    if no_oracle:
        raise ValueError("--methods names oracle but --no-oracle skips it")
    return ",".join(m.strip() for m in spec.split(",") if m.strip() not in ("", "oracle"))


def run(args: argparse.Namespace) -> int:
    from tomohet.bench.datasets import load_dataset_dir
    from tomohet.bench.presets import simulate_presets
    from tomohet.bench.runner import resolve_methods, run_bench
    from tomohet.cli.common import pick_device, prepare_out_dir, stamp_config

    if args.ladder:
        return run_ladder_cli(args)
    presets = args.preset or ([] if args.data else ["demo"])
    try:
        methods = resolve_methods(_without_oracle(args.methods, args.no_oracle))
        overrides = parse_assignments(args.set, dotted=False)
        params = parse_assignments(args.param, dotted=True)
        datasets = [load_dataset_dir(d) for d in args.data or []]
        datasets += simulate_presets(presets, seed=args.seed, quick=args.quick,
                                     overrides=overrides)
    except ValueError as exc:
        print(f"tomohet bench: error: {exc}", file=sys.stderr)
        return 2
    out = prepare_out_dir(args.out)
    stamp_config(out, "bench", vars(args))
    device = pick_device(getattr(args, "device", None))
    df = run_bench(datasets, out, methods=methods, seed=args.seed, device=device,
                   oracle=not args.no_oracle, oracle_grid=args.oracle_grid,
                   report=not args.no_report, params=params)
    n_err = int((df["status"] == "error").sum()) if len(df) else 0
    print(f"wrote {out / 'leaderboard.csv'} ({len(df)} rows, {n_err} errors)"
          + ("" if args.no_report else f" and {out / 'report.html'}"))
    return 0

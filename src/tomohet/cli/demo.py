"""``tomohet demo``: simulate the built-in demo data set, classify it, write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tomohet.cli.common import Eta, HelpFormatter, pick_device, prepare_out_dir, stamp_config

EXAMPLE = """example:
  tomohet demo --out tomohet_demo
  tomohet demo --out tomohet_demo --methods ml2d,shc
"""

DEFAULT_METHODS = "ml2d,shc,wmdpca,vae"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo", help="simulate a small data set, run methods on it, write a report",
        description="The whole pipeline on the built-in 'demo' preset (no download): "
        "simulate tilt-series particles with ground truth, write them as RELION 5 files "
        "(OUT/data), run the chosen methods on those files keeping each method's outputs "
        "(OUT/<method>: maps, star, assignments or latent, config.json), score them "
        "against the truth and the oracle, map the first classifier's classes back into "
        "the tomograms (OUT/<method>/mapback) and draw its classification tree, and write "
        "leaderboard.csv and report.html.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--out", default="tomohet_demo", help="output folder")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma-separated registered methods, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of simulation and methods")
    return p


def _stamp_method_folders(out: Path, methods: list[str], data: Path) -> list[Path]:
    """config.json in each kept method folder, recording the input (so that ``mapback``,
    ``tree`` and re-classification can re-read it)."""
    from tomohet.analysis.runs import input_record

    kept = []
    for name in methods:
        folder = out / name
        if folder.is_dir():
            stamp_config(folder, f"demo {name}", {"method": name, "data": str(data)},
                         extra={"input": input_record(data, fmt="relion5")})
            kept.append(folder)
    return kept


def _tree_and_mapback(run_dir: Path) -> list[str]:
    """Map-back and tree of one classification folder -> report sections (HTML)."""
    from tomohet.analysis.tree import build_tree, draw_tree, node_table
    from tomohet.bench.report import tree_section
    from tomohet.cli import mapback

    sections = []
    nodes = build_tree([run_dir])
    (run_dir / "tree").mkdir(exist_ok=True)
    png = draw_tree(nodes, run_dir / "tree" / "tree.png")
    sections.append(tree_section(png, node_table(nodes)))
    args = argparse.Namespace(run=str(run_dir), tomograms=None, from_input=True, binning=1.0,
                              color_by=None, out=str(run_dir / "mapback"), force=True)
    mapback.run(args)
    page = (run_dir / "mapback" / "mapback.html").read_text()
    start = page.index('<h2 id="mapback">')
    sections.append(page[start:page.index("</body>")])
    return sections


def run(args: argparse.Namespace) -> int:
    from tomohet.bench.datasets import load_dataset_dir
    from tomohet.bench.presets import simulate_presets
    from tomohet.bench.report import append_sections
    from tomohet.bench.runner import resolve_methods, run_bench
    from tomohet.methods import load_all

    t0 = time.perf_counter()
    out = prepare_out_dir(args.out)
    stamp_config(out, "demo", vars(args))
    print("[demo] simulating the 'demo' preset ...")
    sim = simulate_presets(["demo"], seed=args.seed)[0].source
    data_dir = Path(out) / "data"
    sim.write(data_dir)  # type: ignore[union-attr]
    print(f"[demo] wrote the simulated data set (RELION 5 + truth) to {data_dir}")
    ds = load_dataset_dir(data_dir)  # the methods read the files, as a user's would
    ds.name = "demo"
    load_all()
    methods = resolve_methods(args.methods)
    eta = Eta("demo", len(methods))

    started = [False]

    def log(msg: str) -> None:  # a method starts: the one before it has finished
        print(msg, flush=True)
        if "fitting" in msg:
            if started[0]:
                eta.step()
            started[0] = True

    df = run_bench([ds], out, methods=methods, seed=args.seed,
                   device=pick_device(args.device), log=log, keep_outputs=True)
    eta.step("scored")
    kept = _stamp_method_folders(out, methods, next(data_dir.glob("*optimisation_set.star")))
    classified = [f for f in kept if (f / "class_001.mrc").exists()]
    if classified:
        append_sections(out / "report.html", _tree_and_mapback(classified[0]))
    cols = [c for c in ("method", "ari", "ari_frac_oracle", "rank_corr", "fsc_auc", "wall_s")
            if c in df.columns]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"[demo] method outputs: {', '.join(str(f) for f in kept) or 'none'}")
    print(f"[demo] done in {time.perf_counter() - t0:.0f}s; open {out}/report.html")
    return 0

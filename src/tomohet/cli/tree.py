"""``tomohet tree``: draw the tree of a hierarchical classification."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomohet.cli.common import HelpFormatter, prepare_out_dir, refuse_overwrite, stamp_config

EXAMPLE = """examples:
  tomohet classify ml2d particles_optimisation_set.star --k 2 --out l1/
  tomohet classify ml2d l1/ --classes 2 --k 2 --out l1_c2/
  tomohet tree l1/ l1_c2/ --out tree/
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tree", help="draw a hierarchical classification (re-classified classes)",
        description="Builds the tree of classification runs from the parent links in their "
        "config.json (a run's parents are added when not given) and draws it: per class "
        "its population, the central sections of its map and the resolution from its "
        "half-map FSC. Writes tree.png, tree.csv and tree.html (self-contained).",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="classification run folders")
    p.add_argument("--out", default=None, help="output folder (default: FIRST_RUN/tree)")
    p.add_argument("--force", action="store_true", help="overwrite earlier tree files")
    return p


def run(args: argparse.Namespace) -> int:
    from tomohet.analysis.tree import build_tree, draw_tree, node_table
    from tomohet.bench.report import render_page, tree_section
    from tomohet.data.sources import DataError
    from tomohet.io.atomic import atomic_write_text

    out = Path(args.out) if args.out else Path(args.runs[0]) / "tree"
    files = [out / n for n in ("tree.png", "tree.csv", "tree.html")]
    refuse_overwrite(files, args.force)
    if (out / "config.json").exists() and not (out / "tree.csv").exists():
        raise DataError(f"{out}: holds another run's config.json; choose another --out")
    nodes = build_tree(args.runs)
    out = prepare_out_dir(out)
    stamp_config(out, "tree", vars(args))
    png = draw_tree(nodes, files[0])
    table = node_table(nodes)
    atomic_write_text(files[1], table.to_csv(index=False))
    atomic_write_text(files[2], render_page("tomohet classification tree",
                                            [tree_section(png, table)]))
    for _, row in table.iterrows():
        res = "" if row["resolution_A"] is None or row["resolution_A"] != row["resolution_A"] \
            else f", {row['resolution_A']:.0f} A"
        print(f"{'  ' * int(row['depth'])}{row['node']}: {row['particles']} particles"
              f" ({100 * row['fraction_of_parent']:.0f}%){res}")
    print(f"tree: {len(nodes) - 1} classes in {len(table['run'].unique()) - 1} run(s) -> "
          f"{files[2]}")
    return 0

"""``tomohet info``: what is in a particle file."""

from __future__ import annotations

import argparse
import json

from tomohet.cli.common import HelpFormatter

EXAMPLE = """example:
  tomohet info run_optimisation_set.star
  tomohet info particles_warp.star --json
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "info", help="summarise a particle set (any supported format)",
        description="Counts of particles, tomograms and tilts, box, pixel size, dose range "
        "and missing tilts of a RELION 5 / RELION 3.1-4 / Warp / tomoDRGN / STOPGAP / "
        "Dynamo particle set.", epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("data", help="particles star / optimisation set / .tbl")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles

    particles = read_particles(args.data, tomograms=args.tomograms)
    s = particles.summary()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    width = max(len(k) for k in s)
    print(f"{args.data}")
    for k, v in s.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        print(f"  {k.replace('_', ' '):<{width}}  {v}")
    return 0

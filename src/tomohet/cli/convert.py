"""``tomohet convert``: between particle-file flavours."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomohet.cli.common import HelpFormatter, add_datadir_arg, stamp_config

FORMATS = ["relion5", "warp", "relion4", "stopgap", "dynamo"]
EXAMPLE = """example:
  tomohet convert run_optimisation_set.star --to warp --out converted/particles_warp.star
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert", help="convert a particle set to another format",
        description="Read any supported particle set and write it in another flavour. "
        "Columns the target format does not know are kept where the format allows.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("data", help="input particle set")
    p.add_argument("--to", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", required=True, help="output star/tbl path")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles, write_particles

    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    out = Path(args.out)
    written = write_particles(particles, out, fmt=args.to)
    stamp_config(out.parent, "convert", vars(args))
    stacks = [p for p in written if p.suffix == ".mrcs"]
    for path in written:
        if path.suffix != ".mrcs":
            print(f"wrote {path}")
    if stacks:
        print(f"wrote {len(stacks)} image stack(s) next to them")
    print(f"{particles.n_particles} particles: {particles.meta.get('format', '?')} -> "
          f"{args.to}; config.json in {out.parent}")
    return 0

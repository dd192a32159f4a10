"""``tomohet info``: what is in a particle file."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

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


def headline(s: dict[str, Any]) -> str:
    """One line with the counts everyone asks for first."""
    tilts = ""
    if "tilt_slots" in s:
        lo, hi = s["tilts_per_particle_min"], s["tilts_per_particle_max"]
        tilts = (f", {s['tilt_slots']} tilts per tilt series ("
                 + (f"{lo}" if lo == hi else f"{lo}-{hi}") + " visible per particle)")
    return (f"{s['particles']} particles, {s['tomograms']} tomograms{tilts}, "
            f"box {s['box']}, {s['pixel_size_A']:g} A/px")


def missing_tilts(particles: Any) -> dict[str, list[int]]:
    """{tomogram: 1-based tilt slots that no particle of it sees} (2D sets only)."""
    if not hasattr(particles, "visible"):
        return {}
    out: dict[str, list[int]] = {}
    names = np.asarray(particles.tomo_names, dtype=object)
    for tomo in dict.fromkeys(particles.tomo_names):
        vis = particles.visible[names == tomo]
        slots = np.nonzero(~vis.any(axis=0))[0]
        if len(slots):
            out[tomo] = [int(t) + 1 for t in slots]
    return out


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles

    particles = read_particles(args.data, tomograms=args.tomograms)
    s = particles.summary()
    missing = missing_tilts(particles)
    if args.json:
        print(json.dumps({**s, "missing_tilts_per_tomogram": missing}, indent=2))
        return 0
    width = max(len(k) for k in s)
    print(f"{args.data}: {headline(s)}")
    for k, v in s.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        print(f"  {k.replace('_', ' '):<{width}}  {v}")
    for tomo, slots in missing.items():
        print(f"  missing tilts of {tomo} (1-based): {', '.join(map(str, slots))}")
    return 0

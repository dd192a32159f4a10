"""``tomohet info``: what is in a particle file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from tomohet.cli.common import HelpFormatter, add_datadir_arg

EXAMPLE = """example:
  tomohet info run_optimisation_set.star
  tomohet info particles_warp.star --json
  tomohet info tomodrgn/particles.star --datadir /data/stacks
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "info", help="summarise a particle set (any supported format)",
        description="Counts of particles, tomograms and tilts, box, pixel size, dose range "
        "and missing tilts of a RELION 5 / RELION 3.1-4 / Warp / tomoDRGN / STOPGAP / "
        "Dynamo particle set.", epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("data", help="particles star / optimisation set / .tbl")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
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


def conservation(particles: Any) -> dict[str, Any]:
    """Images read vs rows in the file (the readers' ``meta``, see tomohet.io.readers).

    Returns ``lines`` to print and ``warning`` (None when every row is accounted for).
    """
    meta = particles.meta
    rows = int(meta.get("rows_in_file", 0))
    images = int(meta.get("images_read", 0))
    dropped = {str(k): int(v) for k, v in (meta.get("dropped") or {}).items()}
    per_image = meta.get("rows_are", "images") == "images"
    if per_image:
        lines = [f"images read: {images} of {rows} rows in the file"]
        kept, unit = images, "images"
    else:
        lines = [f"images read: {images} (from {particles.n_particles} particles; "
                 f"{rows} rows in the file, one per particle)"]
        kept, unit = particles.n_particles, "particles"
    lines += [f"dropped: {n} rows ({why})" for why, n in dropped.items()]
    if not meta.get("conservation_reported", True):
        lines.append("(the reader did not report its row count; assumed nothing dropped)")
    if "warp_tilt_series_from" in meta:
        lines.append(f"tilt series from: {meta['warp_tilt_series_from']}")
    if meta.get("extraction"):  # boxes cut from the tilt series (tomohet.io.extract)
        ext = meta["extraction"]
        lines.append(f"boxes cut from the tilt series on the fly: {ext['images_padded']} reach "
                     f"past a tilt-image edge (padded with its mean), {ext['images_outside']} "
                     "centres outside (not used)")
    missing = rows - kept - sum(dropped.values())
    warning = None
    if missing != 0:
        warning = (f"WARNING: {kept} {unit} read from {rows} rows in the file with "
                   f"{sum(dropped.values())} documented drops: {abs(missing)} rows "
                   + ("unaccounted for" if missing > 0 else "too many")
                   + ". The reader lost or invented data; do not trust this set.")
    return {"lines": lines, "warning": warning, "rows_in_file": rows, "images_read": images,
            "dropped": dropped}


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles

    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    s = particles.summary()
    missing = missing_tilts(particles)
    cons = conservation(particles)
    if cons["warning"]:
        print(f"\n{'!' * 78}\n{cons['warning']}\n{'!' * 78}\n", file=sys.stderr)
    if args.json:
        print(json.dumps({**s, "missing_tilts_per_tomogram": missing,
                          **{k: cons[k] for k in ("rows_in_file", "images_read", "dropped",
                                                  "warning")}}, indent=2))
        return 0
    width = max(len(k) for k in s)
    print(f"{args.data}: {headline(s)}")
    for line in cons["lines"]:
        print(f"  {line}")
    for k, v in s.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        print(f"  {k.replace('_', ' '):<{width}}  {v}")
    for tomo, slots in missing.items():
        print(f"  missing tilts of {tomo} (1-based): {', '.join(map(str, slots))}")
    return 0

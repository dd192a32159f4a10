"""``tomohet mapback``: classes or latent coordinates placed back into each tomogram."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tomohet.cli.common import HelpFormatter, prepare_out_dir, refuse_overwrite, stamp_config

EXAMPLE = """examples:
  tomohet mapback ml2d/ --from-input
  tomohet mapback ml2d/ --tomograms tomograms.star --binning 4 --out ml2d/mapback
  chimerax ml2d/mapback/TS_01/mapback_TS_01.cxc
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "mapback", help="place class maps at every particle in each tomogram (ChimeraX)",
        description="Per tomogram: a ChimeraX script (.cxc) opening the class (or mean) "
        "map once per particle and placing it at the particle's position and orientation "
        "in the tomogram frame, coloured by class or latent coordinate; an ArtiaX-readable "
        "RELION star (coordinates in tomogram pixels, class and latent columns); a PNG of "
        "three orthogonal projections of the positions; and mapback.html with them.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("run", help="run folder of classify / embed")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tomograms", default=None,
                     help="RELION tomograms star giving each tomogram's size and pixel")
    src.add_argument("--from-input", action="store_true",
                     help="tomogram sizes from the run's input (its tomograms star)")
    p.add_argument("--binning", type=float, default=1.0,
                   help="coordinates written in pixels of BINNING x the tilt-series pixel")
    p.add_argument("--color-by", choices=("state", "latent"), default=None,
                   help="colour by class, or by latent z0 (default: class when there is one)")
    p.add_argument("--out", default=None, help="output folder (default RUN/mapback)")
    p.add_argument("--force", action="store_true", help="overwrite earlier map-back files")
    return p


def _per_particle(run, names: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(1-based classes or None, latent (N, Z) or None) in the order of ``names``."""
    labels = latent = None
    if run.assignments is not None and "class" in run.assignments.columns:
        labels = run.labels().reindex(names).fillna(0).to_numpy(np.int64)
    table = run.latent if run.latent is not None else run.assignments
    if table is not None:
        zc = [c for c in table.columns if c.startswith("z") and c[1:].isdigit()]
        if zc:
            latent = table.set_index(table["particle"].astype(str))[zc].reindex(names)
            latent = latent.to_numpy(float)
    return labels, latent


def _maps(run, labels: np.ndarray | None, n: int) -> tuple[list[Path | None], str]:
    """Map per particle (None: not placed) and what they are."""
    from tomohet.data.sources import DataError

    if run.classes and labels is not None:
        paths = {c: run.class_map(c) for c in run.classes}
        return [paths.get(int(c)) for c in labels], "class maps"
    mean = run.path / "mean.mrc"
    if mean.exists():
        return [mean] * n, "the mean map"
    raise DataError(f"{run.path}: no map to place (class_NNN.mrc with assignments.csv, or "
                    "mean.mrc): is the run complete?")


def _colouring(run_dir, by: str | None, labels: np.ndarray | None,
               latent: np.ndarray | None) -> tuple[str, list[str], np.ndarray]:
    """(what colours: "state"/"latent", hex colour per particle, value per particle)."""
    from tomohet.analysis import mapback as M
    from tomohet.data.sources import DataError

    by = by or ("state" if labels is not None else "latent")
    if by == "state":
        if labels is None:
            raise DataError(f"{run_dir.path / 'assignments.csv'}: --color-by state: no "
                            "column class")
        lut = M.state_colours(labels)
        return by, [lut[int(c)] for c in labels], labels
    if latent is None:
        raise DataError(f"{run_dir.path}: --color-by latent: no latent columns (z0..) in "
                        "latent.csv or assignments.csv")
    return by, M.latent_colours(latent[:, 0]), latent[:, 0]


def run(args: argparse.Namespace) -> int:
    from tomohet.analysis import mapback as M
    from tomohet.analysis.runs import load_run_folder, read_run_particles
    from tomohet.bench.report import mapback_section, render_page
    from tomohet.data.sources import DataError
    from tomohet.io import read_mrc
    from tomohet.io.atomic import atomic_write_text

    run_dir = load_run_folder(args.run)
    particles = read_run_particles(run_dir)
    M.check_coordinates(particles, run_dir.input["path"])
    frames = M.tomogram_frames(particles, None if args.from_input else Path(args.tomograms),
                               args.binning)
    names = list(particles.names)
    labels, latent = _per_particle(run_dir, names)
    by, colours, values = _colouring(run_dir, args.color_by, labels, latent)
    maps, what = _maps(run_dir, labels, len(names))
    first = next((m for m in maps if m is not None), None)
    if first is None:
        raise DataError(f"{run_dir.path}: no particle has a class with a map")
    vol, voxel = read_mrc(first)
    if voxel <= 0:
        raise DataError(f"{first}: the map header has no voxel size")
    centres = np.stack([frames[t].centre_A for t in particles.tomo_names])
    corner = np.asarray(particles.position_A, dtype=float) + centres
    mats = M.placement_matrices(particles.rotation, corner, vol.shape[-1], voxel)
    out = Path(args.out) if args.out else run_dir.path / "mapback"
    refuse_overwrite([out / "mapback.html"] + [out / t / f"mapback_{t}.cxc" for t in frames],
                     args.force)
    out = prepare_out_dir(out)
    stamp_config(out, "mapback", vars(args))
    extra: dict[str, np.ndarray] = {}
    if labels is not None:
        extra["rlnClassNumber"] = labels
    if latent is not None:
        extra.update({f"tomohetLatent{j}": latent[:, j] for j in range(latent.shape[1])})
    pictures, files = [], []
    title = f"tomohet mapback of {run_dir.path} ({what})"
    for t, fr in frames.items():
        sel = np.array([i for i, name in enumerate(particles.tomo_names)
                        if name == t and maps[i] is not None], dtype=np.int64)
        if not len(sel):
            continue
        placed = M.Placed([names[i] for i in sel], [m for i in sel if (m := maps[i])],
                          [colours[i] for i in sel], corner[sel], particles.rotation[sel],
                          mats[sel], values[sel], {k: v[sel] for k, v in extra.items()})
        png = M.write_tomogram(out / t, fr, placed, by == "state", title)
        pictures.append((t, png))
        files += [f"{t}/mapback_{t}.cxc", f"{t}/particles_{t}.star"]
        print(f"mapback: {t}: {len(sel)} particles -> {out / t}")
    atomic_write_text(out / "mapback.html", render_page(
        f"tomohet mapback: {run_dir.path.name}", [mapback_section(pictures, files)]))
    print(f"mapback: {len(pictures)} tomogram(s), {what}, coloured by {by} -> "
          f"{out / 'mapback.html'}")
    return 0

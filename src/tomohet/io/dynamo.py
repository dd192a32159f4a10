"""Dynamo tables (``.tbl``): whitespace-separated numbers, one row per particle.

Column meanings (Dynamo wiki "Table"; teamtomo ``dynamotable``), 1-based: 1 tag,
2 aligned, 3 averaged, 4-6 dx dy dz (shifts, voxels), 7-9 tdrot tilt narot (degrees,
ZXZ; see :mod:`tomohet.io.conventions`), 10 cc, 11 cc2, 12 cpu, 13 ftype, 14-17
ymintilt ymaxtilt xmintilt xmaxtilt, 18-19 fs1 fs2, 20 tomo, 21 reg, 22 class,
23 annotation, 24-26 x y z (voxels), 27 dshift, 28 daxis, 29 dnarot, 30 dcc, 31 otag,
32 npar, 33 (unused), 34 ref, 35 sref. Columns past 35 are kept; their names, when
tomohet wrote them, are in a sidecar ``<table>.columns.json``.

Reading: position = (x + dx, y + dy, z + dz) * voxel size, relative to the tomogram
corner; ``A = dynamo_euler2matrix(tdrot, tilt, narot).T``; names are the tags. Volumes
follow the Dynamo convention ``particle_<tag>.mrc`` in the table's folder or the
``volumes=`` argument (see :mod:`tomohet.io.subtomo`). Wedge columns (13-17) are kept in
the table but no wedge weights are built (``weights`` is None).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.particles import SubtomogramParticles
from tomohet.data.sources import DataError, VolumeSource
from tomohet.io.atomic import atomic_write_text
from tomohet.io.common import Overrides, first_rows, merge_extra, tomogram_centres_A
from tomohet.io.conventions import dynamo_to_matrix, matrix_to_dynamo
from tomohet.io.star import check_path
from tomohet.io.stopgap import link_volumes
from tomohet.io.subtomo import (
    VolumeSpec,
    check_volumes,
    find_volumes,
    numbers_from,
    volume_files_for_writing,
    volume_optics,
)
from tomohet.io.validate import check_finite, int_column

__all__ = ["read_dynamo", "write_dynamo", "COLUMNS", "read_table"]

COLUMNS = ("tag", "aligned", "averaged", "dx", "dy", "dz", "tdrot", "tilt", "narot", "cc",
           "cc2", "cpu", "ftype", "ymintilt", "ymaxtilt", "xmintilt", "xmaxtilt", "fs1", "fs2",
           "tomo", "reg", "class", "annotation", "x", "y", "z", "dshift", "daxis", "dnarot",
           "dcc", "otag", "npar", "undefined1", "ref", "sref")
MIN_COLUMNS = 26
DEFAULTS = ("particle_{id:06d}.mrc", "particle_{id:05d}.mrc", "particle_{id:06d}.em",
            "particle_{id:05d}.em")
WEDGE_DEFAULTS = {"aligned": 1, "averaged": 1, "ftype": 1, "ymintilt": -60, "ymaxtilt": 60,
                  "xmintilt": -60, "xmaxtilt": 60}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".columns.json")


def _sidecar_names(p: Path) -> list[str]:
    """Names of the columns past 35 from ``<table>.columns.json`` (a JSON list of str)."""
    side = _sidecar(p)
    if not side.exists():
        return []
    try:
        names = json.loads(side.read_bytes().decode("utf-8"))
    except (ValueError, OSError) as exc:
        raise DataError(f"{side}: not a valid JSON column list ({exc})") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{side}: expected a JSON list of column names, got "
                        f"{type(names).__name__}")
    return names


def read_table(path: str | Path) -> pd.DataFrame:
    """A Dynamo table as a DataFrame with named columns (float64)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    check_path(p, "Dynamo table")
    text = p.read_bytes().decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{p}: empty table (no particles)")
    ncols = len(lines[0].split())
    if ncols < MIN_COLUMNS:
        raise DataError(f"{p}: {ncols} columns; a Dynamo table needs at least {MIN_COLUMNS} "
                        "(x, y, z are columns 24-26)")
    extra_names = _sidecar_names(p)
    names = list(COLUMNS[:ncols]) + [
        extra_names[i - 35] if i - 35 < len(extra_names) else f"col{i + 1}"
        for i in range(35, ncols)]
    values = np.empty((len(lines), ncols))
    for r, line in enumerate(lines):
        fields = line.split()
        if len(fields) != ncols:
            raise DataError(f"{p}: line {r + 1} has {len(fields)} values, expected {ncols} "
                            "(file truncated or malformed?)")
        for c, f in enumerate(fields):
            try:
                values[r, c] = float(f)
            except ValueError as exc:
                raise DataError(f"{p}: line {r + 1}, column {c + 1} ({names[c]}): {f!r} is "
                                "not a number") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{p}: line {r + 1}, column {c + 1} ({names[c]}) is NaN/inf")
    return pd.DataFrame(values, columns=names)


def read_dynamo(path: str | Path, volumes: VolumeSpec = None,
                overrides: Overrides | None = None) -> SubtomogramParticles:
    """Read a Dynamo ``.tbl`` -> SubtomogramParticles (volumes from the tags)."""
    p = Path(path)
    df = read_table(p)
    tags = numbers_from(df["tag"].to_numpy(), "tag (column 1)", p)
    tomo = [str(v) for v in int_column(df["tomo"].to_numpy(), p, "tomo (column 20)")] \
        if "tomo" in df.columns else ["1"] * len(df)
    files = find_volumes(volumes, tags, p, DEFAULTS)
    ov = overrides or Overrides()
    optics = volume_optics(files[0], ov, p)
    check_volumes(files, (optics.box,) * 3, p, "volume of tag",
                  None if ov.pixel_size_A is not None else optics.pixel_size_A)
    with np.errstate(over="ignore", invalid="ignore"):
        pos = (df[["x", "y", "z"]].to_numpy() + df[["dx", "dy", "dz"]].to_numpy()) \
            * optics.pixel_size_A
    for k, a in enumerate("xyz"):
        check_finite(pos[:, k], p, f"{a} + d{a} (columns {24 + k} and {4 + k})")
    rot = dynamo_to_matrix(df["tdrot"].to_numpy(), df["tilt"].to_numpy(), df["narot"].to_numpy())
    b = optics.box
    meta = {"rows_in_file": len(df), "images_read": len(df), "dropped": {},
            "rows_are": "images", "format": "dynamo", "source": str(p),
            "tomogram_centres_A": {}, "coordinate_pixel_size_A": optics.pixel_size_A}
    return SubtomogramParticles(
        names=[str(t) for t in tags], tomo_names=tomo, position_A=pos,
        rotation=rot, volumes=VolumeSource(files, (b, b, b)), weights=None, optics=optics,
        weight_layout="none", table=df, meta=meta,
    )


def _column(df: pd.DataFrame, name: str, default: np.ndarray | float) -> np.ndarray:
    n = len(df)
    if name in df.columns:
        v = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(v).all():
            return v
    return np.broadcast_to(np.asarray(default, dtype=np.float64), (n,)).copy()


def _numbers(names: list[str]) -> np.ndarray | None:
    if all(s.strip().lstrip("-").isdigit() for s in names) and len(set(names)) == len(names):
        return np.array([int(s) for s in names], dtype=np.float64)
    return None


def _format(values: np.ndarray) -> str:
    lines = []
    for row in values:
        lines.append(" ".join(str(int(v)) if float(v).is_integer() and abs(v) < 1e15
                              else format(float(v), ".10g") for v in row))
    return "\n".join(lines) + "\n"


def write_dynamo(particles: SubtomogramParticles, path: str | Path,
                 extra_columns: pd.DataFrame | None = None) -> list[Path]:
    """Write a Dynamo table (+ ``particle_<tag:06d>.mrc`` volume links next to it)."""
    p = particles
    out = Path(path)
    if not isinstance(p, SubtomogramParticles):
        raise DataError(f"{out}: a Dynamo table needs 3D subtomogram particles")
    n = p.n_particles
    df = first_rows(p.table, n)
    numbers = _numbers(p.names)
    tags = _column(df, "tag", numbers if numbers is not None else np.arange(1, n + 1))
    tomo_default = _numbers(list(dict.fromkeys(p.tomo_names)))
    tomo = _column(df, "tomo", np.array([int(t) for t in p.tomo_names]) if tomo_default
                   is not None else pd.factorize(pd.Series(p.tomo_names))[0] + 1)
    table = {c: _column(df, c, WEDGE_DEFAULTS.get(c, 0.0)) for c in COLUMNS}
    table["tag"], table["tomo"] = tags, tomo
    shift = np.stack([table[c] for c in ("dx", "dy", "dz")], -1)
    pos = (p.position_A + tomogram_centres_A(p)) / p.optics.pixel_size_A - shift
    table["x"], table["y"], table["z"] = pos[:, 0], pos[:, 1], pos[:, 2]
    ang = matrix_to_dynamo(p.rotation)
    table["tdrot"], table["tilt"], table["narot"] = ang[:, 0], ang[:, 1], ang[:, 2]
    for source in (df, extra_columns):
        if source is not None and "rlnClassNumber" in source.columns:
            table["class"] = pd.to_numeric(source["rlnClassNumber"]).to_numpy(np.float64)
    cols = pd.DataFrame(table)
    others = [c for c in df.columns if c not in COLUMNS and not str(c).startswith("rln")]
    for c in others:
        cols[c] = df[c].to_numpy()
    cols = merge_extra(cols, extra_columns, n, out)
    try:
        values = cols.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{out}: Dynamo tables hold numbers only; a column is not "
                        f"numeric ({exc})") from exc
    vols, _, written = volume_files_for_writing(p, out)
    written += link_volumes(vols, [out.parent / f"particle_{int(t):06d}.mrc" for t in tags])
    atomic_write_text(out, _format(values))
    side = _sidecar(out)
    if len(cols.columns) > len(COLUMNS):
        atomic_write_text(side, json.dumps([str(c) for c in cols.columns[len(COLUMNS):]]))
        written.append(side)
    elif side.exists():
        side.unlink()
    return [*written, out]

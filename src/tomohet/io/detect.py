"""Which particle-file flavour a file is, from the meaning of its columns.

* ``dynamo``: no ``data_`` block, rows of >= 26 numbers (or a ``.tbl`` suffix).
* ``relion5``: an optimisation set (``rlnTomoParticlesFile``), or particles with
  ``rlnTomoName`` and ``rlnTomoVisibleFrames`` / ``rlnTomoSubTomosAre2DStacks 1`` /
  ``.mrcs`` stacks. A RELION 5 star with ``rlnTomoSubTomosAre2DStacks 0`` holds 3D
  subtomograms and is reported as ``relion4`` (same reader).
* ``stopgap``: a block with ``motl_idx``, ``tomo_num`` and ``orig_x`` (the motivelist).
* ``warp``: one row per tilt image: a per-particle group column (``rlnGroupName`` or
  ``rlnTomoParticleName``) repeated over rows, ``index@stack`` image names and per-row
  dose/tilt columns (``rlnCtfBfactor``, ``rlnCtfScalefactor`` or
  ``rlnMicrographPreExposure``).
* ``relion4``: one 3D volume per particle: ``rlnCtfImage``, 3D optics
  (``rlnImageDimensionality 3``) or ``.mrc`` image names with a tomogram column.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tomohet.data.sources import DataError
from tomohet.io.star import Block, check_path, key_values, loop_blocks, read_star
from tomohet.io.validate import strict_int

__all__ = ["detect_format", "detect_from_blocks", "FORMATS"]

FORMATS = ("relion5", "warp", "relion4", "stopgap", "dynamo")


def _looks_numeric_table(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(65536).decode(errors="replace")
    if "data_" in head:
        return False
    for line in head.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            try:
                [float(f) for f in fields]
            except ValueError:
                return False
            return len(fields) >= 26
    return False


def _particle_block(blocks: dict[str, Block]) -> pd.DataFrame | None:
    loops = loop_blocks(blocks)
    if "particles" in loops:
        return loops["particles"]
    for df in loops.values():
        if "rlnImageName" in df.columns or "rlnTomoName" in df.columns:
            return df
    return None


def _is_per_tilt(df: pd.DataFrame) -> bool:
    group = next((c for c in ("rlnTomoParticleName", "rlnGroupName") if c in df.columns), None)
    if group is None or "rlnImageName" not in df.columns or len(df) == 0:
        return False
    if "rlnTomoVisibleFrames" in df.columns:
        return False
    at = df["rlnImageName"].astype(str).str.contains("@").all()
    per_row = any(c in df.columns for c in (
        "rlnCtfBfactor", "rlnCtfScalefactor", "rlnMicrographPreExposure"))
    repeated = df[group].duplicated().any()
    return bool(at and per_row and (repeated or "rlnAngleRot" in df.columns))


def _is_per_tilt_without_group(df: pd.DataFrame) -> bool:
    """``index@stack`` image names and per-image dose/tilt columns but no group column:
    a per-tilt star that lost its particle column (the Warp reader says so clearly).
    RELION 5 names one whole stack per particle, without ``@``."""
    if "rlnImageName" not in df.columns or "rlnTomoName" not in df.columns or len(df) == 0 \
            or "rlnTomoVisibleFrames" in df.columns or any(
                c in df.columns for c in ("rlnTomoParticleName", "rlnGroupName")):
        return False
    at = df["rlnImageName"].astype(str).str.contains("@").all()
    return bool(at and any(c in df.columns for c in ("rlnCtfBfactor", "rlnCtfScalefactor")))


def detect_from_blocks(blocks: dict[str, Block], path: Path) -> str:
    """Format name of parsed STAR blocks (see the module docstring)."""
    for b in blocks.values():
        keys = b.keys() if isinstance(b, dict) else b.columns
        if "rlnTomoParticlesFile" in keys:
            return "relion5"
    for name, df in loop_blocks(blocks).items():
        if name == "stopgap_motivelist" or {"motl_idx", "tomo_num", "orig_x"} <= set(df.columns):
            return "stopgap"
    df = _particle_block(blocks)
    if df is None:
        raise DataError(f"{path}: no particle block found (no data_particles block and no "
                        "block with rlnImageName or rlnTomoName; not a tomography particle "
                        "file?)")
    cols = set(df.columns)
    general = key_values(blocks, "general")
    stacks2d = general.get("rlnTomoSubTomosAre2DStacks")
    optics = loop_blocks(blocks).get("optics")
    dim3 = optics is not None and "rlnImageDimensionality" in optics.columns and \
        (pd.to_numeric(optics["rlnImageDimensionality"], errors="coerce") == 3).any()
    names = df["rlnImageName"].astype(str) if "rlnImageName" in cols else pd.Series([], dtype=str)
    if _is_per_tilt(df) or _is_per_tilt_without_group(df):
        return "warp"
    if stacks2d is not None and strict_int(stacks2d, path, "rlnTomoSubTomosAre2DStacks",
                                           "general", 0, 1) == 0:
        return "relion4"
    if "rlnTomoName" in cols and ("rlnTomoVisibleFrames" in cols or stacks2d is not None
                                  or names.str.endswith(".mrcs").all()) and not dim3:
        return "relion5"
    tomo = bool(cols & {"rlnTomoName", "rlnMicrographName"})
    if "rlnImageName" in cols and ("rlnCtfImage" in cols or dim3 or (
            tomo and "rlnCoordinateZ" in cols and not names.str.contains("@").any())):
        return "relion4"
    hint = "; a per-tilt (Warp/tomoDRGN) star needs rlnGroupName or rlnTomoParticleName" \
        if len(names) and names.str.contains("@").all() else \
        "; it has no rlnImageName column (the images or subtomograms)" \
        if "rlnImageName" not in cols else ""
    raise DataError(f"{path}: not a recognised tomography particle file (columns: "
                    f"{', '.join(sorted(cols)[:12])}{', ...' if len(cols) > 12 else ''})"
                    + hint)


def detect_format(path: str | os.PathLike[str]) -> str:
    """One of :data:`FORMATS` for the file at ``path``; DataError if none fits."""
    p = Path(path)
    check_path(p, "particle file")
    if p.suffix.lower() == ".tbl" or _looks_numeric_table(p):
        return "dynamo"
    return detect_from_blocks(read_star(p), p)

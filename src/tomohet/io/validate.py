"""Plausibility checks shared by the readers: every failure is a DataError naming the
file, the block and the column (or field).

* :func:`strict_int` / :func:`int_column`: integers written as text (``"37"``, ``"37.0"``),
  never truncated (``37.9`` and ``2.5`` are errors, not 37 and 2).
* :func:`check_range`: impossible values (pixel size <= 0 or 1e30, negative dose, 0 kV).
* :func:`check_unique`: duplicated particle names, image files, tags.
* :func:`check_finite`: values that overflow to inf after unit conversion.
* :func:`check_optics`: the :class:`~tomohet.data.particles.Optics` of a set.
* :func:`warn_pixel_mismatch`: a star pixel size that disagrees with an MRC header.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomohet.data.particles import Optics
from tomohet.data.sources import DataError

__all__ = [
    "strict_int", "int_column", "check_range", "check_unique", "check_finite",
    "check_optics", "warn_pixel_mismatch", "PIXEL_RANGE_A", "where", "check_half_sets",
]

PIXEL_RANGE_A = (1e-3, 1e4)  # A per pixel; anything outside is a broken file
MAX_COORD = 1e12  # positions beyond this (A or px) are nonsense


def where(path: Path | str, block: str | None, col: str) -> str:
    """``"<file>: block data_<block>, column <col>"`` (or without the block)."""
    return f"{path}: block data_{block}, column {col}" if block is not None \
        else f"{path}: {col}"


def strict_int(value: Any, path: Path | str, col: str, block: str | None = None,
               lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int; DataError for text, NaN, non-integers or values out of range."""
    try:
        f = float(str(value).strip())
    except (TypeError, ValueError):
        raise DataError(f"{where(path, block, col)}: {value!r} is not an integer") from None
    if not np.isfinite(f) or f != np.round(f):
        raise DataError(f"{where(path, block, col)}: {value!r} is not an integer")
    k = int(round(f))
    if (lo is not None and k < lo) or (hi is not None and k > hi):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise DataError(f"{where(path, block, col)}: {k} is outside {bounds}")
    return k


def int_column(values: np.ndarray, path: Path | str, col: str, block: str | None = None,
               lo: int | None = None) -> np.ndarray:
    """A float column (already finite) as int64; DataError naming the first non-integer."""
    v = np.asarray(values, dtype=np.float64)
    bad = np.nonzero(v != np.round(v))[0]
    if len(bad):
        raise DataError(f"{where(path, block, col)}: {v[bad[0]]:g} in row {bad[0] + 1} is not "
                        "an integer")
    if lo is not None and (v < lo).any():
        r = int(np.nonzero(v < lo)[0][0])
        raise DataError(f"{where(path, block, col)}: {v[r]:g} in row {r + 1} is below {lo}")
    return np.round(v).astype(np.int64)


def check_range(values: np.ndarray | float, path: Path | str, col: str,
                block: str | None = None, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, what: str = "") -> None:
    """DataError naming the first value outside ``[lo, hi]`` (``(lo, hi]`` if lo_open)."""
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    bad = ~np.isfinite(v)
    if lo is not None:
        bad |= (v <= lo) if lo_open else (v < lo)
    if hi is not None:
        bad |= v > hi
    if bad.any():
        r = int(np.nonzero(bad)[0][0])
        low = f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else ""
        high = f"<= {hi:g}" if hi is not None else ""
        need = " and ".join(x for x in (low, high) if x)
        row = f" in row {r + 1}" if v.size > 1 else ""
        raise DataError(f"{where(path, block, col)}: {v[r]:g}{row} is impossible"
                        f"{' for ' + what if what else ''} (must be {need or 'finite'})")


def check_unique(values: Sequence[Any], path: Path | str, col: str,
                 block: str | None = None, what: str = "value") -> None:
    """DataError naming the first duplicate and both rows."""
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v in seen:
            raise DataError(f"{where(path, block, col)}: duplicate {what} {v!r} in rows "
                            f"{seen[v] + 1} and {i + 1}")
        seen[v] = i


def check_finite(values: np.ndarray, path: Path | str, col: str, block: str | None = None,
                 limit: float = MAX_COORD) -> None:
    """DataError if a derived value (e.g. a position in A) is not finite or absurd."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v) | (np.abs(v) > limit)
    if bad.any():
        r = int(np.nonzero(bad.reshape(len(v), -1).any(axis=1))[0][0]) if v.ndim else 0
        raise DataError(f"{where(path, block, col)}: row {r + 1} gives a position that is "
                        f"not finite or beyond {limit:g} (overflow?)")


def check_optics(optics: Optics, path: Path | str, cols: dict[str, str] | None = None) -> None:
    """Pixel size, box, voltage and amplitude contrast of a set must be physical.

    ``cols`` maps the Optics attribute to the file's column name for the message.
    """
    c = {"pixel_size_A": "rlnImagePixelSize", "box": "rlnImageSize",
         "voltage_kv": "rlnVoltage", "cs_mm": "rlnSphericalAberration",
         "amplitude_contrast": "rlnAmplitudeContrast", **(cols or {})}
    check_range(optics.pixel_size_A, path, c["pixel_size_A"], None, *PIXEL_RANGE_A,
                lo_open=True, what="a pixel size in A")
    if optics.box < 2:
        raise DataError(f"{path}: {c['box']}: box size {optics.box} is impossible")
    check_range(optics.voltage_kv, path, c["voltage_kv"], None, 0.0, 1e4, lo_open=True,
                what="an acceleration voltage in kV")
    check_range(optics.cs_mm, path, c["cs_mm"], None, -1e3, 1e3)
    check_range(optics.amplitude_contrast, path, c["amplitude_contrast"], None, 0.0, 1.0,
                what="an amplitude contrast")


def warn_pixel_mismatch(star_px: float, header_px: float, file: str | Path,
                        path: Path | str, col: str = "rlnImagePixelSize") -> None:
    """Warn when an MRC header's pixel size (if set) disagrees with the star's by > 1 %."""
    if header_px > 0 and star_px > 0 and abs(header_px / star_px - 1.0) > 0.01:
        warnings.warn(f"{path}: {col} {star_px:g} A differs from the pixel size "
                      f"{header_px:g} A in the header of {file}; using {star_px:g} A",
                      RuntimeWarning, stacklevel=3)


def check_half_sets(df: Any, path: Path | str, block: str) -> None:
    """``rlnRandomSubset`` (when present) must be 1 or 2 in every row."""
    if "rlnRandomSubset" not in df.columns:
        return
    import pandas as pd

    values = pd.to_numeric(df["rlnRandomSubset"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isin(values, (1.0, 2.0))
    if bad.any():
        r = int(np.nonzero(bad)[0][0])
        raise DataError(f"{where(path, block, 'rlnRandomSubset')}: "
                        f"{df['rlnRandomSubset'].iloc[r]!r} in row {r + 1} is not 1 or 2")

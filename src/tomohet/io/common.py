"""Helpers shared by the format modules: paths, optics, image names, extra columns."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.particles import Optics, SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import ArrayImageSource, DataError, ExtractedImageSource, ImageSource
from tomohet.io.star import numeric

__all__ = [
    "Overrides", "resolve_files", "split_image_names", "optics_value", "merge_extra",
    "tomogram_centres_A", "relative_name", "first_rows", "file_images",
]


@dataclass
class Overrides:
    """Reader options that replace what the file says (None: keep the file's value)."""

    ctf_premultiplied: bool | None = None
    dose_weighted: bool | None = None
    pixel_size_A: float | None = None
    # folder holding the image/volume files named in the star (see resolve_files)
    datadir: Path | None = None

    def apply(self, optics: Optics) -> Optics:
        if self.ctf_premultiplied is not None:
            optics.ctf_premultiplied = bool(self.ctf_premultiplied)
        if self.dose_weighted is not None:
            optics.dose_weighted = bool(self.dose_weighted)
        if self.pixel_size_A is not None:
            optics.pixel_size_A = float(self.pixel_size_A)
        return optics


def _candidates(name: str, star_path: Path, datadir: Path | None) -> dict[str, Path]:
    """Where a file named ``name`` in ``star_path`` may lie: {place: path}, in order."""
    path = Path(name)
    out: dict[str, Path] = {}
    if datadir is not None:
        if not path.is_absolute():
            out["datadir"] = datadir / path
        out["datadir name"] = datadir / path.name
    if path.is_absolute():
        out["absolute"] = path
    else:
        out["star folder"] = star_path.parent / path
        out["cwd"] = Path.cwd() / path
    return out


def _hint(datadir: Path | None) -> str:
    if datadir is None:
        return "; if the paths are relative to another folder, pass --datadir DIR"
    return ""


def resolve_files(names: Sequence[str], star_path: Path, what: str,
                  datadir: str | os.PathLike[str] | None = None) -> list[str]:
    """Resolve file names written in ``star_path``; returns absolute paths, one per name.

    Places tried, in order: with ``datadir`` (``--datadir``, as tomoDRGN and cryoDRGN name
    it) ``datadir/name`` (relative names) and ``datadir/<file name>``; then the name itself
    if absolute, else relative to the star's folder and to the working directory. The
    place where the first file exists is used for every file (one layout per star); a file
    missing there raises a DataError naming the star, ``what`` (the field) and every place
    tried for that file.
    """
    if not names:
        return []
    folder = None if datadir is None else Path(datadir)
    unique = list(dict.fromkeys(names))
    first = _candidates(unique[0], star_path, folder)
    place = next((k for k, c in first.items() if c.exists()), None)
    if place is None:
        raise DataError(f"{star_path}: {what} {unique[0]} not found (tried "
                        f"{', '.join(map(str, first.values()))})" + _hint(folder))
    resolved: dict[str, str] = {}
    for name in unique:
        cands = _candidates(name, star_path, folder)
        p = cands.get(place)
        if p is None:  # an absolute name among relative ones (or the reverse)
            p = next((c for c in cands.values() if c.exists()), None)
        if p is None or not p.exists():
            tried = ", ".join(map(str, cands.values()))
            raise DataError(f"{star_path}: {what} {name} not found (tried {tried}; the first "
                            f"file was found at {first[place]})" + _hint(folder))
        resolved[name] = str(p.resolve())
    return [resolved[n] for n in names]


def split_image_names(names: Sequence[str], star_path: Path,
                      column: str = "rlnImageName") -> tuple[np.ndarray, list[str]]:
    """``idx@file`` names -> (0-based frame (n,), file names). Raises DataError if malformed."""
    frames = np.empty(len(names), dtype=np.int64)
    files = []
    for i, name in enumerate(names):
        idx, sep, file = name.partition("@")
        if not sep or not idx.strip().isdigit() or int(idx) < 1 or not file:
            raise DataError(f"{star_path}: {column} row {i + 1} is {name!r}, expected "
                            "index@stack.mrcs with a 1-based index")
        frames[i] = int(idx) - 1
        files.append(file)
    return frames, files


def optics_value(df: pd.DataFrame, opt: pd.DataFrame | None, col: str, path: Path,
                 default: float | None = None) -> float:
    """A scalar from the particle block (first row) or the optics block (first row)."""
    if col in df.columns and len(df):
        return float(numeric(df.iloc[:1], col, path, "particles")[0])
    if opt is not None and col in opt.columns and len(opt):
        return float(numeric(opt.iloc[:1], col, path, "optics")[0])
    if default is None:
        raise DataError(f"{path}: no column {col} in the particle or optics block")
    return float(default)


def merge_extra(df: pd.DataFrame, extra: pd.DataFrame | None, n: int,
                path: Path) -> pd.DataFrame:
    """Append ``extra`` (one row per particle) to ``df``, replacing same-named columns."""
    if extra is None or len(extra.columns) == 0:
        return df
    if len(extra) != n:
        raise DataError(f"{path}: extra_columns has {len(extra)} rows for {n} particles")
    out = df.reset_index(drop=True).copy()
    for col in extra.columns:
        out[str(col)] = extra[col].to_numpy()
    return out


def tomogram_centres_A(particles: TiltSeriesParticles | SubtomogramParticles) -> np.ndarray:
    """(N, 3) tomogram centre of each particle relative to the tomogram corner, in A.

    From ``meta["tomogram_centres_A"]`` (readers), else ``meta["tomograms"][name]["size_A"]``
    (simulator), else zeros (positions are then taken as corner-relative).
    """
    meta = particles.meta
    centres = meta.get("tomogram_centres_A") or {}
    sims = meta.get("tomograms") or {}
    out = np.zeros((particles.n_particles, 3))
    for i, name in enumerate(particles.tomo_names):
        if name in centres:
            out[i] = np.asarray(centres[name], dtype=np.float64)
        elif isinstance(sims.get(name), dict) and "size_A" in sims[name]:
            out[i] = np.asarray(sims[name]["size_A"], dtype=np.float64) / 2.0
    return out


def relative_name(file: str | Path, star_path: Path) -> str:
    """``file`` relative to the folder of ``star_path`` (POSIX separators)."""
    return Path(os.path.relpath(Path(file).resolve(), star_path.parent.resolve())).as_posix()


def first_rows(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``table`` if it has one row per particle, else an empty frame with n rows."""
    if len(table) == n and n > 0:
        return table.reset_index(drop=True).copy()
    return pd.DataFrame(index=range(n))


def file_images(source: ImageSource) -> bool:
    """True when images are frames of files on disk (not an in-memory array, not boxes
    cut from tilt series on the fly)."""
    return not isinstance(source, ArrayImageSource | ExtractedImageSource) and all(
        not f.startswith("<") for f in source.files)


def as_int(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default

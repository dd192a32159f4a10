"""Helpers for the 3D subtomogram formats (RELION 3.1/4, STOPGAP, Dynamo).

Volume files of STOPGAP and Dynamo tables are not named in the table. They are found
from the ``volumes`` argument of :func:`tomohet.io.read_particles`:

* ``None``: the format's naming convention in the table's folder (STOPGAP
  ``subtomo_<subtomo_num>.mrc``, also in ``subtomograms/`` and ``../subtomograms/``;
  Dynamo ``particle_<tag:06d>.mrc`` or ``particle_<tag:05d>.mrc``);
* a folder: the same names inside that folder;
* a pattern with ``{id}`` (``str.format``, e.g. ``"sub/particle_{id:06d}.mrc"``) or a
  printf pattern (``"sub/particle_%06d.mrc"``), filled with the particle number;
* a list of paths, one per table row.

Relative paths are taken from the table's folder. Only MRC volumes are read: EM-format
files (``.em``) raise a DataError asking for conversion to MRC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tomohet.data.particles import Optics, SubtomogramParticles
from tomohet.data.sources import ArrayVolumeSource, DataError, VolumeSource
from tomohet.io.common import Overrides
from tomohet.io.mrc import mrc_info, write_mrc
from tomohet.io.validate import (
    PIXEL_RANGE_A,
    check_range,
    check_unique,
    int_column,
    warn_pixel_mismatch,
)

__all__ = ["VolumeSpec", "find_volumes", "volume_optics", "volume_files_for_writing",
           "check_volumes", "numbers_from"]

VolumeSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def _fill(pattern: str, number: int) -> str:
    if "{" in pattern:
        return pattern.format(number, id=number, tag=number, num=number)
    if "%" in pattern:
        return pattern % number
    raise DataError(f"volume pattern {pattern!r} has no {{id}} or %d placeholder")


def find_volumes(volumes: VolumeSpec, numbers: Sequence[int], table: Path,
                 defaults: Sequence[str]) -> list[str]:
    """One existing MRC file per particle number (see the module docstring)."""
    folder = table.parent
    if volumes is not None and not isinstance(volumes, str | os.PathLike):
        files = [str(v) for v in volumes]
        if len(files) != len(numbers):
            raise DataError(f"{table}: {len(files)} volume files for {len(numbers)} particles")
        files = [str(f if Path(f).is_absolute() else folder / f) for f in files]
    else:
        if volumes is None:
            patterns = [str(folder / d) for d in defaults]
        elif Path(volumes).is_dir() or (folder / Path(volumes)).is_dir():
            base = Path(volumes) if Path(volumes).is_absolute() else folder / Path(volumes)
            patterns = [str(base / Path(d).name) for d in defaults]
        else:
            v = str(volumes)
            patterns = [v if Path(v).is_absolute() else str(folder / v)]
        first = next((pt for pt in patterns if Path(_fill(pt, numbers[0])).exists()), None)
        if first is None:
            tried = ", ".join(_fill(pt, numbers[0]) for pt in patterns)
            raise DataError(f"{table}: no volume file found for particle {numbers[0]} "
                            f"(tried {tried}); pass volumes=")
        files = [_fill(first, k) for k in numbers]
    for f in files:
        if not Path(f).exists():
            raise DataError(f"{table}: volume file {f} not found")
        if Path(f).is_dir():
            raise DataError(f"{table}: volume file {f} is a folder (directory), not MRC")
    if files and Path(files[0]).suffix.lower() == ".em":
        raise DataError(f"{files[0]}: EM-format volumes are not supported; convert them to "
                        "MRC (e.g. Dynamo dwrite to .mrc) and pass volumes=")
    return files


def volume_optics(first_file: str, overrides: Overrides, table: Path,
                  pixel_size_A: float | None = None,
                  pixel_field: str = "pixel size") -> Optics:
    """Optics of a subtomogram set from its first volume (box, voxel size).

    The pixel size is ``overrides`` > ``pixel_size_A`` (the table's, named
    ``pixel_field``) > the volume header; it must be plausible (0.001-10000 A).
    """
    info = mrc_info(first_file)
    if len(info.shape) != 3 or len(set(info.shape)) != 1:
        raise DataError(f"{first_file}: expected a cubic 3D volume, got shape {info.shape}")
    if overrides.pixel_size_A is not None:
        px, field = float(overrides.pixel_size_A), "pixel_size_A"
    elif pixel_size_A is not None:
        px, field = float(pixel_size_A), pixel_field
    else:
        px, field = info.pixel_size_A, f"pixel size in the header of {first_file}"
        if not px or px <= 0:
            raise DataError(f"{table}: no pixel size in the table or the volume header of "
                            f"{first_file}; pass pixel_size_A")
    check_range(px, table, field, None, *PIXEL_RANGE_A, lo_open=True,
                what="a pixel size in A")
    optics = Optics(pixel_size_A=float(px), box=int(info.shape[0]))
    return overrides.apply(optics)


def check_volumes(files: Sequence[str], shape: tuple[int, ...], table: Path, field: str,
                  pixel_A: float | None = None) -> None:
    """Header of every volume (not its voxels): readable MRC, size matching the header,
    real mode and ``shape``; a header pixel size that disagrees with ``pixel_A`` warns."""
    check_unique(list(files), table, field, None, "file (two rows name one volume)")
    for row, f in enumerate(files):
        info = mrc_info(f)
        if tuple(info.shape) != tuple(shape):
            raise DataError(f"{table}: {field} of row {row + 1}: {f} has shape {info.shape}, "
                            f"expected {tuple(shape)} (wrong box?)")
        if pixel_A is not None:
            warn_pixel_mismatch(pixel_A, info.pixel_size_A, f, table, field)


def volume_files_for_writing(p: SubtomogramParticles, star: Path) -> tuple[
        list[str], list[str] | None, list[Path]]:
    """Paths of the volumes and weights; in-memory ones are written next to ``star``."""
    written: list[Path] = []

    def files_of(source: VolumeSource | None, stem: str) -> list[str] | None:
        if source is None:
            return None
        if isinstance(source, ArrayVolumeSource) or any(f.startswith("<") for f in source.files):
            out = []
            folder = star.with_name(star.stem + "_subtomos")
            for i in range(len(source)):
                vol = source.read([i]).numpy()[0]
                path = folder / f"{stem}_{i + 1:06d}.mrc"
                written.append(write_mrc(path, vol, p.optics.pixel_size_A))
                out.append(str(path))
            return out
        return [str(Path(f).resolve()) for f in source.files]

    vols = files_of(p.volumes, "subtomo")
    if vols is None:
        raise DataError(f"{star}: the particle set has no volumes")
    return vols, files_of(p.weights, "ctf"), written


def numbers_from(values: np.ndarray, what: str, table: Path,
                 block: str | None = None) -> list[int]:
    """Unique integer particle numbers (tags, subtomo_num) from a float column."""
    nums = int_column(values, table, what, block).tolist()
    check_unique(nums, table, what, block, "particle number")
    return nums

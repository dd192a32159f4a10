"""``read_particles``: one entry point for every supported particle-file flavour."""

from __future__ import annotations

import os
from pathlib import Path

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError
from tomohet.io.common import Overrides
from tomohet.io.detect import FORMATS, detect_format
from tomohet.io.subtomo import VolumeSpec

__all__ = ["read_particles"]


def _opt_path(path: str | os.PathLike[str] | None) -> Path | None:
    return None if path is None else Path(path)


def read_particles(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    tomograms: str | os.PathLike[str] | None = None,
    ctf_premultiplied: bool | None = None,
    dose_weighted: bool | None = None,
    pixel_size_A: float | None = None,
    volumes: VolumeSpec = None,
) -> TiltSeriesParticles | SubtomogramParticles:
    """Read a particle set in any supported flavour.

    Args:
        path: RELION 5 optimisation set or particles star, Warp/tomoDRGN per-tilt star,
            RELION 3.1/4 subtomogram star, STOPGAP motivelist star or Dynamo ``.tbl``.
        fmt: ``"auto"`` (detected from the columns, see :mod:`tomohet.io.detect`) or one
            of ``relion5``, ``warp``, ``relion4``, ``stopgap``, ``dynamo``.
        tomograms: RELION tomograms star (RELION 5 particles star; optional for RELION 4,
            where it gives the tomogram sizes). Default: found next to the particles.
        ctf_premultiplied, dose_weighted, pixel_size_A: replace the file's values
            (``pixel_size_A`` is the image/voxel size in A).
        volumes: subtomogram files of STOPGAP/Dynamo tables (folder, ``{id}``/``%d``
            pattern or list; default: the format's naming next to the table).

    Returns:
        TiltSeriesParticles for 2D tilt-series formats, SubtomogramParticles for 3D ones.

    Raises:
        DataError: with the file and column at fault.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    ov = Overrides(ctf_premultiplied, dose_weighted, pixel_size_A)
    kind = detect_format(p) if fmt in ("auto", None) else fmt
    if kind == "relion5":
        from tomohet.io.relion5 import read_relion5

        return read_relion5(p, tomograms=_opt_path(tomograms), overrides=ov)
    if kind == "warp":
        from tomohet.io.warp import read_warp

        return read_warp(p, overrides=ov)
    if kind == "relion4":
        from tomohet.io.relion4 import read_relion4

        return read_relion4(p, tomograms=_opt_path(tomograms), overrides=ov)
    if kind == "stopgap":
        from tomohet.io.stopgap import read_stopgap

        return read_stopgap(p, volumes=volumes, overrides=ov)
    if kind == "dynamo":
        from tomohet.io.dynamo import read_dynamo

        return read_dynamo(p, volumes=volumes, overrides=ov)
    raise DataError(f"{p}: unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")

"""``read_particles``: one entry point for every supported particle-file flavour.

Conservation convention (every reader sets these in ``particles.meta``; defaults are
filled here for a reader that does not):

* ``rows_in_file`` (int): data rows of the particles / image block;
* ``images_read`` (int): visible (particle, tilt) images of a tilt-series set, or
  subtomograms of a subtomogram set;
* ``dropped`` (dict reason -> rows): rows a documented filter removed (empty if none);
* ``rows_are`` (``"images"`` or ``"particles"``): what one row is. Per-tilt stars, and
  subtomogram sets, have one row per image (``images_read + sum(dropped) ==
  rows_in_file``); a RELION 5 particles star has one row per particle (``n_particles +
  sum(dropped) == rows_in_file``, its tilt images come from the tomograms star);
* ``conservation_reported`` (bool): False when the defaults below were filled in.

``tomohet info`` prints these and warns when a count does not add up.
"""

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
    datadir: str | os.PathLike[str] | None = None,
    extract: bool | None = None,
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
            pattern or list; default: the format's naming next to the table, or in
            ``datadir`` when given).
        datadir: folder of the image / volume / CTF files named in the star when their
            paths are relative to another folder (``--datadir`` of tomoDRGN and cryoDRGN);
            tried before the star's folder, see :func:`tomohet.io.common.resolve_files`.
        extract: RELION 5 only: cut each particle's boxes from the tilt series on the fly
            (``rlnTomoTiltSeriesName`` / ``rlnMicrographName``, memory-mapped, no files
            written; :mod:`tomohet.io.extract`). Default: when the particles star has no
            ``rlnImageName`` (no 2D stacks). ``False`` requires the stacks.

    Returns:
        TiltSeriesParticles for 2D tilt-series formats, SubtomogramParticles for 3D ones.

    Raises:
        DataError: with the file and column at fault.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if datadir is not None and not Path(datadir).is_dir():
        raise DataError(f"{p}: --datadir {datadir} is not a folder")
    folder = None if datadir is None else Path(datadir)
    ov = Overrides(ctf_premultiplied, dose_weighted, pixel_size_A, datadir=folder)
    kind = detect_format(p) if fmt in ("auto", None) else fmt
    if extract and kind != "relion5":
        raise DataError(f"{p}: on-the-fly extraction reads RELION 5 particles + tomograms "
                        f"stars; this file is {kind}")
    particles = _read(p, kind, fmt, tomograms, volumes if volumes is not None else folder, ov,
                      extract)
    fill_conservation(particles)
    return particles


def _read(p: Path, kind: str, fmt: str, tomograms: str | os.PathLike[str] | None,
          volumes: VolumeSpec, ov: Overrides, extract: bool | None = None,
          ) -> TiltSeriesParticles | SubtomogramParticles:
    if kind == "relion5":
        from tomohet.io.relion5 import read_relion5

        return read_relion5(p, tomograms=_opt_path(tomograms), overrides=ov, extract=extract)
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


def fill_conservation(particles: TiltSeriesParticles | SubtomogramParticles) -> None:
    """Default ``rows_in_file``/``images_read``/``dropped``/``rows_are`` (module doc)."""
    meta = particles.meta
    if isinstance(particles, TiltSeriesParticles):
        images = int(particles.visible.sum())
        rows_are = "images" if meta.get("format") == "warp" else "particles"
    else:
        images = particles.n_particles
        rows_are = "images"
    meta.setdefault("conservation_reported", "rows_in_file" in meta)
    meta.setdefault("images_read", images)
    meta.setdefault("rows_are", rows_are)
    meta.setdefault("dropped", {})
    if "rows_in_file" not in meta:
        kept = images if meta["rows_are"] == "images" else particles.n_particles
        meta["rows_in_file"] = kept + sum(int(v) for v in meta["dropped"].values())

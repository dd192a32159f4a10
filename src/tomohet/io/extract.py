"""On-the-fly extraction of RELION 5 particles from their tilt series (nextPYP style).

A RELION 5 particles star without 2D particle stacks (no ``rlnImageName``, or
``read_particles(..., extract=True)``) is read from the tilt images themselves:

* Tilt images: per tilt row, ``rlnMicrographName`` of the per-tilt table when it reads
  ``N@stack.mrcs`` (1-based frame ``N``); else frame ``f`` of the stack
  ``rlnTomoTiltSeriesName`` (data_global; a ``:mrc`` suffix is ignored) is tilt row ``f``;
  else ``rlnMicrographName`` naming one 2D image per tilt row. Relative names resolve
  next to the star that holds them, in its parent folders, then the working folder
  (``--datadir`` first when given).
* The tilt images must be ``rlnTomoSizeX`` x ``rlnTomoSizeY`` pixels (the tomograms
  star's size, in tilt-series pixels): anything else is a DataError naming the file and
  the field. A box pixel (``rlnImagePixelSize``) coarser than the tilt-series pixel
  (binned particles) is made by Fourier cropping (:mod:`tomohet.physics.extract`); a
  finer one is refused.
* Box centre of particle ``n`` in tilt row ``f``: ``(P_f @ [x_n, 1])[:2]`` with ``P_f``
  the RELION 5 projection (tomogram pixel -> tilt-image pixel, :mod:`tomohet.io.tomograms`)
  and ``x_n`` the particle's coordinate in tomogram pixels *before* its origin shift
  (``rlnCenteredCoordinate`` / ``rlnCoordinate``), as RELION centres extracted stacks;
  the origin stays in the per-image shift, exactly as for written stacks.
* Edges: a box that reaches outside its tilt image is padded with that image's mean
  (``meta["extraction"]["images_padded"]``); an image whose box centre lies outside the
  tilt image is not used (``images_outside``); a particle left without any image is
  dropped and counted in ``meta["dropped"]``, so every row is accounted for.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tomohet.data.particles import Optics, TiltSeriesParticles
from tomohet.data.sources import DataError, ExtractedImageSource
from tomohet.io.common import split_image_names
from tomohet.io.mrc import mrc_info
from tomohet.io.star import resolve_path, strings
from tomohet.io.tomograms import TiltSeriesInfo
from tomohet.io.validate import warn_pixel_mismatch
from tomohet.physics.extract import box_crosses

__all__ = ["tilt_images", "box_centres", "extraction_source", "finish_extraction",
           "DROP_REASON"]

DROP_REASON = "no tilt image holds the particle (on-the-fly extraction)"


def _resolve(name: str, star: Path, datadir: Path | None) -> Path:
    """A tilt image file named in ``star``: ``datadir`` first, then next to the star and
    in its parent folders, then the working folder."""
    name = name[:-4] if name.endswith(":mrc") else name
    if datadir is not None:
        for cand in (datadir / name, datadir / Path(name).name):
            if cand.exists():
                return cand
    return resolve_path(name, star, bases=list(star.resolve().parents)[:3])


def tilt_images(info: TiltSeriesInfo, datadir: Path | None = None,
                ) -> tuple[list[Path], np.ndarray, str]:
    """(file (F,), 0-based frame (F,), field that named them) of each tilt row."""
    tilts = info.tilts
    star = info.tilts_path or info.star_path or Path(".")
    gstar = info.star_path or star
    f = info.n_frames
    names = strings(tilts, "rlnMicrographName", star, info.name) \
        if "rlnMicrographName" in tilts.columns and len(tilts) == f else None
    if names is not None and all("@" in n for n in names):
        frames, files = split_image_names(names, star, "rlnMicrographName")
        return [_resolve(n, star, datadir) for n in files], frames, "rlnMicrographName"
    stack = str(info.global_row.get("rlnTomoTiltSeriesName", "")).strip()
    if stack:
        path = _resolve(stack, gstar, datadir)
        if path.is_file():
            return [path] * f, np.arange(f), "rlnTomoTiltSeriesName"
    if names is not None:
        paths = [_resolve(n, star, datadir) for n in names]
        if all(p.is_file() for p in paths):
            return paths, np.zeros(f, dtype=np.int64), "rlnMicrographName"
    tried = f"rlnTomoTiltSeriesName {stack!r}" if stack else "no rlnTomoTiltSeriesName"
    raise DataError(f"{gstar}: tomogram {info.name}: no tilt images to extract particles "
                    f"from ({tried} in data_global; rlnMicrographName of the per-tilt rows "
                    "not found either); pass --datadir or write particle stacks")


def _check_files(info: TiltSeriesInfo, files: list[Path], frames: np.ndarray, field: str,
                 ) -> tuple[int, int]:
    """Header checks of the tilt images of one tomogram; returns their (W, H)."""
    gstar = info.star_path or Path(".")
    size = None
    for path in dict.fromkeys(files):
        if not path.is_file():
            raise DataError(f"{gstar}: tomogram {info.name}: {field} {path} not found")
        head = mrc_info(path)
        h, w = head.shape[-2:]
        count = head.shape[0] if len(head.shape) == 3 else 1
        if field == "rlnTomoTiltSeriesName" and count != info.n_frames:
            raise DataError(f"{path}: {count} tilt images but tomogram {info.name} has "
                            f"{info.n_frames} tilt rows in {info.tilts_path or gstar} "
                            "(rlnTomoTiltSeriesName; frame f must be tilt row f)")
        top = int(frames[[p == path for p in files]].max())
        if top >= count:
            raise DataError(f"{path}: tilt image {top + 1} is needed ({field} of tomogram "
                            f"{info.name}) but the file holds {count}")
        sx, sy = info.size_px[:2]
        if np.isfinite(sx) and np.isfinite(sy) and (w, h) != (int(sx), int(sy)):
            raise DataError(f"{path}: tilt images are {w}x{h} px but {gstar} gives "
                            f"rlnTomoSizeX/rlnTomoSizeY {int(sx)}x{int(sy)} for tomogram "
                            f"{info.name} (wrong or binned tilt series?)")
        if size is not None and (w, h) != size:
            raise DataError(f"{path}: tilt images are {w}x{h} px, other tilt images of "
                            f"tomogram {info.name} are {size[0]}x{size[1]} ({field})")
        size = (int(w), int(h))
        warn_pixel_mismatch(info.pixel_size_A, head.pixel_size_A, path, gstar,
                            "rlnTomoTiltSeriesPixelSize")
    assert size is not None
    return size


def box_centres(projection: np.ndarray, coord_px: np.ndarray) -> np.ndarray:
    """Tilt-image positions (N, F, 2) (x, y) of tomogram points ``coord_px`` (N, 3)
    (tomogram pixels) under RELION 5 projections ``projection`` (F, 4, 4)."""
    hom = np.concatenate([coord_px, np.ones((len(coord_px), 1))], axis=1)
    return np.einsum("fij,nj->nfi", projection, hom)[..., :2]


def extraction_source(infos: dict[str, TiltSeriesInfo], tomo: list[str], coord_A: np.ndarray,
                      vis: np.ndarray, optics: Optics, pix_ts: np.ndarray,
                      datadir: Path | None, path: Path, forced: bool = False,
                      ) -> tuple[ExtractedImageSource, np.ndarray, np.ndarray, dict]:
    """Lazy boxes for every visible (particle, tilt) image.

    Args:
        coord_A: (N, 3) particle coordinates before the origin shift, relative to the
            tomogram centre (A).
        vis: (N, T) visible images (rlnTomoVisibleFrames).
        optics: box and box pixel (``rlnImagePixelSize``; the tilt-series pixel when not
            given, set here).
        pix_ts: (N,) tilt-series pixel size of each particle (A).
        forced: extraction was asked for; otherwise (no ``rlnImageName``) an error says
            that the stacks are missing too.

    Returns:
        (source, image_index (N, T), visible (N, T) with the images outside their tilt
        image switched off, report dict).
    """
    if not np.isfinite(optics.pixel_size_A):
        optics.pixel_size_A = float(pix_ts[0])
    try:
        return _extraction_source(infos, tomo, coord_A, vis, optics.box,
                                  optics.pixel_size_A, pix_ts, datadir, path)
    except DataError as exc:
        if forced:
            raise
        raise DataError(f"{path}: data_particles has no rlnImageName (2D stacks), and "
                        f"extracting the particles from the tilt series failed: {exc}"
                        ) from exc


def finish_extraction(p: TiltSeriesParticles, report: dict) -> TiltSeriesParticles:
    """Extraction report in ``meta``; particles left without an image are dropped."""
    keep = np.nonzero(p.visible.any(axis=1))[0]
    if len(keep) == 0:
        raise DataError(f"{p.meta['source']}: on-the-fly extraction: no particle box centre "
                        "lies inside its tilt images (wrong coordinates or projections?)")
    lost = p.n_particles - len(keep)
    out = p.subset(keep) if lost else p
    out.meta = dict(p.meta, extraction=report, images_read=int(out.visible.sum()),
                    images_from="tilt series (on-the-fly extraction)")
    out.meta.pop("subset_of", None)
    if lost:
        out.meta["dropped"] = {DROP_REASON: lost}
    return out


def _extraction_source(infos: dict[str, TiltSeriesInfo], tomo: list[str],
                       coord_A: np.ndarray, vis: np.ndarray, box: int, pixel_A: float,
                       pix_ts: np.ndarray, datadir: Path | None, path: Path,
                       ) -> tuple[ExtractedImageSource, np.ndarray, np.ndarray, dict]:
    if box <= 0:
        raise DataError(f"{path}: on-the-fly extraction needs the box size: rlnImageSize "
                        "in data_optics")
    if np.abs(pix_ts / pix_ts[0] - 1.0).max() > 1e-6:
        raise DataError(f"{path}: tomograms differ in rlnTomoTiltSeriesPixelSize; on-the-fly "
                        "extraction needs one tilt-series pixel size")
    scale = float(pixel_A / pix_ts[0])
    if abs(scale - 1.0) < 1e-3:
        scale = 1.0
    elif scale < 1.0:
        raise DataError(f"{path}: rlnImagePixelSize {pixel_A:g} A is finer than the tilt-series "
                        f"pixel size {float(pix_ts[0]):g} A; on-the-fly extraction bins, it "
                        "does not upsample")
    vis = vis.copy()
    n, t = vis.shape
    centres = np.zeros((n, t, 2))
    file_of = np.zeros((n, t), dtype=np.int64)
    frame_of = np.zeros((n, t), dtype=np.int64)
    files: list[str] = []
    names = np.asarray(tomo, dtype=object)
    padded = outside = 0
    series = {}
    for name in dict.fromkeys(tomo):
        idx = np.nonzero(names == name)[0]
        info = infos[name]
        paths, frames, field = tilt_images(info, datadir)
        w, h = _check_files(info, paths, frames, field)
        series[name] = str(paths[0]) if len(set(paths)) == 1 else f"{len(set(paths))} files"
        f = info.n_frames
        coord_px = coord_A[idx] / pix_ts[idx, None] + info.centre_px
        c = box_centres(info.projection, coord_px)
        centres[idx, :f] = c
        ids = {p: len(files) + i for i, p in enumerate(dict.fromkeys(paths))}
        files += [str(p) for p in ids]
        file_of[idx, :f] = [ids[p] for p in paths]
        frame_of[idx, :f] = frames
        inside = (c[..., 0] >= 0) & (c[..., 0] <= w - 1) & (c[..., 1] >= 0) & \
            (c[..., 1] <= h - 1)
        crosses = box_crosses(c.reshape(-1, 2), box, (w, h), scale).reshape(len(idx), f)
        sub = vis[idx, :f]
        outside += int((sub & ~inside).sum())
        padded += int((sub & inside & crosses).sum())
        vis[idx, :f] = sub & inside
    n_idx, t_idx = np.nonzero(vis)
    image_index = np.full(vis.shape, -1, dtype=np.int64)
    image_index[n_idx, t_idx] = np.arange(len(n_idx))
    source = ExtractedImageSource(files, file_of[n_idx, t_idx],
                                  frame_of[n_idx, t_idx], box, centres[n_idx, t_idx], scale)
    report = {"tilt_series": series, "images_padded": padded, "images_outside": outside,
              "binning": scale}
    if padded or outside:
        warnings.warn(f"{path}: on-the-fly extraction: {padded} boxes reach outside their "
                      f"tilt image (padded with the image mean), {outside} box centres lie "
                      "outside it (images not used)", RuntimeWarning, stacklevel=3)
    return source, image_index, vis, report

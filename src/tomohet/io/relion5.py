"""RELION 5 tilt-series particles (2D stacks): optimisation set, particles and tomograms star.

Facts used (RELION 5 ``ParticleSet``/``TomogramSet``/``Tomogram``):

* Particle orientation ``A = A_subtomo @ A_particle`` from ``rlnTomoSubtomogramRot/Tilt/Psi``
  and ``rlnAngleRot/Tilt/Psi``; position from ``rlnCenteredCoordinateX/Y/ZAngst`` or
  ``rlnCoordinateX/Y/Z`` (tilt-series pixels, decentred by ``size / 2.0``), minus the
  rotated origin ``A_subtomo @ rlnOriginX/Y/ZAngst``.
* Frame ``f`` of a particle's stack (``rlnImageName``) is tilt row ``f`` of its tomogram;
  ``rlnTomoVisibleFrames`` (one 0/1 per tilt row) marks usable frames. Slot ``t`` of the
  tomohet arrays is frame ``t``; every frame keeps its own dose, tilt, CTF and projection.
* Per-image defocus = tilt-row defocus + ``rlnTomoHand * rlnTomoDefocusSlope *
  (P @ x)_z`` with ``x`` the particle position relative to the tomogram centre (A).
* The shift of the particle in image ``f`` is the projected 3D offset
  ``(P_f @ (-A_subtomo @ origin))[:2]``.

tomohet adds optional per-particle vector columns ``tomohetDefocusUOffsetAngst`` /
``tomohetDefocusVOffsetAngst`` (one value per tilt row) for per-particle defocus values
that differ from the tomogram's (e.g. simulated defocus errors); RELION ignores them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tomohet.data.particles import Optics, SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError, ImageSource
from tomohet.io.common import Overrides, optics_value, resolve_files
from tomohet.io.extract import extraction_source, finish_extraction
from tomohet.io.mrc import mrc_info
from tomohet.io.relion_geometry import particle_geometry
from tomohet.io.star import (
    find_block,
    key_values,
    loop_blocks,
    numeric,
    read_star,
    resolve_path,
    strings,
    vectors,
)
from tomohet.io.tomograms import TiltSeriesInfo, read_tomograms_star
from tomohet.io.validate import (
    PIXEL_RANGE_A,
    check_half_sets,
    check_optics,
    check_range,
    check_unique,
    int_column,
    strict_int,
    warn_pixel_mismatch,
)
from tomohet.physics.ctf import depth_defocus_offset_A

__all__ = ["read_relion5", "find_tomograms_star", "DEFOCUS_OFFSET_COLS", "is_optimisation_set",
           "default_names"]

DEFOCUS_OFFSET_COLS = ("tomohetDefocusUOffsetAngst", "tomohetDefocusVOffsetAngst")


def is_optimisation_set(blocks: dict) -> bool:
    return any(isinstance(b, dict) and "rlnTomoParticlesFile" in b for b in blocks.values()) \
        or any(isinstance(b, pd.DataFrame) and "rlnTomoParticlesFile" in b.columns
               for b in blocks.values())


def _optimisation_values(blocks: dict, path: Path) -> dict:
    for b in blocks.values():
        values = b if isinstance(b, dict) else (b.iloc[0].to_dict() if len(b) else {})
        if "rlnTomoParticlesFile" in values:
            return values
    raise DataError(f"{path}: no rlnTomoParticlesFile in the optimisation set")


def find_tomograms_star(particles_path: Path, required: bool = True) -> Path | None:
    """The tomograms star belonging to a particles star found next to it."""
    folder = particles_path.parent
    for cand in (particles_path.with_name(particles_path.stem + "_tomograms.star"),
                 folder / "tomograms.star"):
        if cand.exists():
            return cand
    for opt in sorted(folder.glob("*optimisation_set*.star")):
        try:
            values = _optimisation_values(read_star(opt), opt)
        except DataError:
            continue
        if resolve_path(str(values["rlnTomoParticlesFile"]), opt).resolve() == \
                particles_path.resolve() and "rlnTomoTomogramsFile" in values:
            return resolve_path(str(values["rlnTomoTomogramsFile"]), opt)
    found = sorted(folder.glob("*tomograms*.star"))
    if len(found) == 1:
        return found[0]
    if not required:
        return None
    raise DataError(f"{particles_path}: no tomograms star found next to it; pass tomograms=")


def _named_file(values: dict, key: str, opt: Path) -> Path:
    """A file named in the optimisation set; DataError naming the set and the field."""
    name = str(values[key]).strip()
    p = resolve_path(name, opt)
    if not p.is_file():
        why = "is a folder" if p.is_dir() else "not found"
        raise DataError(f"{opt}: {key} {name} {why} (looked at {p})")
    return p


def _inputs(path: Path, tomograms: str | Path | None) -> tuple[Path, Path | None, dict]:
    blocks = read_star(path)
    if is_optimisation_set(blocks):
        values = _optimisation_values(blocks, path)
        ppath = _named_file(values, "rlnTomoParticlesFile", path)
        if tomograms is None and "rlnTomoTomogramsFile" in values:
            tomograms = _named_file(values, "rlnTomoTomogramsFile", path)
        if tomograms is None:  # the set names only the particles: look next to them
            tomograms = find_tomograms_star(ppath, required=False)
        return ppath, None if tomograms is None else Path(tomograms), read_star(ppath)
    tpath = Path(tomograms) if tomograms is not None else find_tomograms_star(path, False)
    return path, tpath, blocks


def _optics(parts: pd.DataFrame, opt: pd.DataFrame | None, infos: dict[str, TiltSeriesInfo],
            tomo: list[str], path: Path) -> tuple[Optics, np.ndarray]:
    """Optics of the set and the tilt-series pixel size (A) of each particle (N,)."""
    if opt is None:
        raise DataError(f"{path}: no data_optics block")
    groups = int_column(numeric(parts, "rlnOpticsGroup", path, "particles", default=1), path,
                        "rlnOpticsGroup", "particles")
    og = int_column(numeric(opt, "rlnOpticsGroup", path, "optics"), path, "rlnOpticsGroup",
                    "optics")
    check_unique(og.tolist(), path, "rlnOpticsGroup", "optics", "optics group")
    row_of = {g: i for i, g in enumerate(og)}
    bad = [g for g in dict.fromkeys(groups.tolist()) if g not in row_of]
    if bad:
        raise DataError(f"{path}: rlnOpticsGroup {bad[0]} of data_particles is not in data_optics")
    rows = np.array([row_of[g] for g in groups], dtype=np.int64)
    px = numeric(opt, "rlnImagePixelSize", path, "optics", default=np.nan)[rows]
    box = numeric(opt, "rlnImageSize", path, "optics", default=0)[rows]
    if "rlnImagePixelSize" in opt.columns:
        check_range(px, path, "rlnImagePixelSize", "optics", *PIXEL_RANGE_A, lo_open=True)
    int_column(box, path, "rlnImageSize", "optics", lo=0)
    for name, v in (("rlnImagePixelSize", px), ("rlnImageSize", box)):
        if len(np.unique(v)) > 1:
            raise DataError(f"{path}: optics groups differ in {name}; tomohet needs one value")
    if "rlnTomoTiltSeriesPixelSize" in opt.columns:
        pix_ts = numeric(opt, "rlnTomoTiltSeriesPixelSize", path, "optics")[rows]
    else:
        pix_ts = np.array([infos[t].pixel_size_A for t in tomo])
    check_range(pix_ts, path, "rlnTomoTiltSeriesPixelSize", "optics", *PIXEL_RANGE_A,
                lo_open=True, what="the tilt-series pixel size")
    first = infos[tomo[0]].global_row
    consts = []
    for col, default in (("rlnVoltage", None), ("rlnSphericalAberration", None),
                         ("rlnAmplitudeContrast", None)):
        g = first.get(col, default)
        consts.append(optics_value(parts.iloc[:0], opt.iloc[rows[:1]], col, path, g))
    premult = numeric(opt, "rlnCtfDataAreCtfPremultiplied", path, "optics", default=0)[rows]
    optics = Optics(pixel_size_A=float(px[0]), box=int(box[0]), voltage_kv=consts[0],
                    cs_mm=consts[1], amplitude_contrast=consts[2],
                    ctf_premultiplied=bool(premult[0] > 0.5), dose_weighted=False)
    if np.isfinite(optics.pixel_size_A):
        check_optics(optics, path, {"box": "rlnImageSize (data_optics)"})
    return optics, pix_ts


def _visible(parts: pd.DataFrame, frames: np.ndarray, t_max: int, path: Path,
             tomo: list[str], tpath: Path) -> np.ndarray:
    n = len(parts)
    vis = np.zeros((n, t_max), dtype=bool)
    if "rlnTomoVisibleFrames" not in parts.columns:
        for i in range(n):
            vis[i, : frames[i]] = True
        return vis
    for i, v in enumerate(vectors(parts, "rlnTomoVisibleFrames", path, "particles")):
        if len(v) != frames[i]:
            raise DataError(f"{path}: rlnTomoVisibleFrames of particle row {i + 1} has "
                            f"{len(v)} entries but tomogram {tomo[i]} has {frames[i]} tilt "
                            f"rows (frames) in {tpath}")
        if not np.isin(v, (0.0, 1.0)).all():
            raise DataError(f"{path}: rlnTomoVisibleFrames of row {i + 1} is not 0/1")
        if not v.any():
            raise DataError(f"{path}: rlnTomoVisibleFrames of row {i + 1} has no visible "
                            "frame (remove the particle)")
        vis[i, : frames[i]] = v > 0.5
    return vis


def _tilt_arrays(infos: dict[str, TiltSeriesInfo], tomo: list[str], pos: np.ndarray,
                 offset3d: np.ndarray, t_max: int) -> dict[str, np.ndarray]:
    """Per-image arrays (N, T[, ...]); slots past a tomogram's last tilt are padding."""
    n = len(tomo)
    out = {k: np.zeros((n, t_max)) for k in (
        "tilt_deg", "dose_e_per_A2", "defocus_u_A", "defocus_v_A", "defocus_angle_deg")}
    out["ctf_scale"] = np.ones((n, t_max))
    out["shift_A"] = np.zeros((n, t_max, 2))
    out["tilt_rotation"] = np.broadcast_to(np.eye(3), (n, t_max, 3, 3)).copy()
    names = np.asarray(tomo, dtype=object)
    for name in dict.fromkeys(tomo):
        idx = np.nonzero(names == name)[0]
        info = infos[name]
        f = info.n_frames
        rot = info.projection[:, :3, :3]
        dz = depth_defocus_offset_A(torch.as_tensor(rot)[None], torch.as_tensor(pos[idx]),
                                    info.handedness).numpy() * info.defocus_slope
        out["tilt_rotation"][idx, :f] = rot
        out["defocus_u_A"][idx, :f] = info.defocus_u_A + dz
        out["defocus_v_A"][idx, :f] = info.defocus_v_A + dz
        for key in ("defocus_angle_deg", "dose_e_per_A2", "tilt_deg", "ctf_scale"):
            out[key][idx, :f] = getattr(info, key)
        proj = np.einsum("fij,kj->kfi", rot, offset3d[idx])
        out["shift_A"][idx, :f] = proj[..., :2]
    return out


def _images(parts: pd.DataFrame, path: Path, vis: np.ndarray, frames: np.ndarray,
            box: int, tomo: list[str], pixel_A: float, datadir: Path | None = None,
            ) -> tuple[ImageSource, np.ndarray, int]:
    """One 2D stack per particle; returns (source, image_index (N, T), box).

    Every stack's header is checked (not the pixels): an image stack, the box, and one
    frame per tilt row of its tomogram (a missing or extra frame would shift every later
    frame onto another tilt's dose, defocus and projection).
    """
    names = strings(parts, "rlnImageName", path, "particles")
    check_unique(names, path, "rlnImageName", "particles",
                 "2D stack (each particle has its own stack)")
    files = resolve_files(names, path, "2D stack (rlnImageName)", datadir=datadir)
    unique = list(dict.fromkeys(files))
    file_id = {f: i for i, f in enumerate(unique)}
    for row, f in enumerate(files):
        info = mrc_info(f)
        if not info.is_stack:
            raise DataError(f"{path}: rlnImageName of row {row + 1}: {f} is a 3D volume, "
                            "not a 2D image stack")
        ny, nx = info.shape[-2:]
        if box <= 0:
            box = int(nx)
        if (ny, nx) != (box, box):
            raise DataError(f"{path}: rlnImageSize is {box} but the 2D stack {f} holds "
                            f"{ny}x{nx} px images (rlnImageName, wrong box)")
        count = info.shape[0] if len(info.shape) == 3 else 1
        if count != frames[row]:
            raise DataError(f"{path}: the 2D stack {f} (rlnImageName) has {count} frames but "
                            f"tomogram {tomo[row]} has {frames[row]} tilt rows in the "
                            "tomograms star; frame f must be tilt row f")
        warn_pixel_mismatch(pixel_A, info.pixel_size_A, f, path)
    n_idx, t_idx = np.nonzero(vis)
    image_index = np.full(vis.shape, -1, dtype=np.int64)
    image_index[n_idx, t_idx] = np.arange(len(n_idx))
    fidx = np.array([file_id[files[i]] for i in n_idx], dtype=np.int64)
    return ImageSource(unique, fidx, t_idx, box), image_index, box


def _defocus_offsets(parts: pd.DataFrame, path: Path, frames: np.ndarray,
                     t_max: int) -> list[np.ndarray]:
    out = []
    for col in DEFOCUS_OFFSET_COLS:
        arr = np.zeros((len(parts), t_max))
        if col in parts.columns:
            for i, v in enumerate(vectors(parts, col, path, "particles")):
                if len(v) != frames[i]:
                    raise DataError(f"{path}: {col} of row {i + 1} has {len(v)} values for "
                                    f"{frames[i]} tilts")
                arr[i, : frames[i]] = v
        out.append(arr)
    return out


def _check_duplicates(parts: pd.DataFrame, path: Path) -> None:
    """Duplicated rows or particle names: DataError naming the rows."""
    dup = parts.astype(str).duplicated()
    if dup.any():
        r = int(np.nonzero(dup.to_numpy())[0][0])
        raise DataError(f"{path}: block data_particles: row {r + 1} is a duplicate of an "
                        "earlier row")
    if "rlnTomoParticleName" in parts.columns:
        check_unique(strings(parts, "rlnTomoParticleName", path, "particles"), path,
                     "rlnTomoParticleName", "particles", "particle name")
    check_half_sets(parts, path, "particles")


def default_names(tomo: list[str]) -> list[str]:
    """RELION's names for unnamed particles: ``<tomogram>/<1-based count in tomogram>``."""
    count: dict[str, int] = {}
    out = []
    for t in tomo:
        count[t] = count.get(t, 0) + 1
        out.append(f"{t}/{count[t]}")
    return out


def read_relion5(path: str | Path, tomograms: str | Path | None = None,
                 overrides: Overrides | None = None, extract: bool | None = None,
                 ) -> TiltSeriesParticles | SubtomogramParticles:
    """Read a RELION 5 optimisation set or particles star (+ tomograms star).

    A particles star with ``rlnTomoSubTomosAre2DStacks 0`` holds 3D subtomograms and is
    read by :func:`tomohet.io.relion4.read_relion4`. ``extract``: cut the particle boxes
    from the tilt series on the fly (:mod:`tomohet.io.extract`) instead of reading 2D
    stacks; default (None) when the particles have no ``rlnImageName``.
    """
    ppath, tpath, blocks = _inputs(Path(path), tomograms)
    ov = overrides or Overrides()
    general = key_values(blocks, "general")
    if "rlnTomoSubTomosAre2DStacks" in general and strict_int(
            general["rlnTomoSubTomosAre2DStacks"], ppath, "rlnTomoSubTomosAre2DStacks",
            "general", 0, 1) == 0:
        from tomohet.io.relion4 import read_relion4

        if extract:
            raise DataError(f"{ppath}: rlnTomoSubTomosAre2DStacks is 0 (3D subtomograms); "
                            "on-the-fly extraction cuts 2D tilt-series particles")
        sub = read_relion4(ppath, tomograms=tpath, overrides=ov)
        sub.meta.update(particles_path=str(ppath),
                        tomograms_path=None if tpath is None else str(tpath),
                        optimisation_set=None if ppath == Path(path) else str(path))
        return sub
    if tpath is None:
        raise DataError(f"{ppath}: no tomograms star found next to it; pass tomograms=")
    _, parts = find_block(blocks, ppath, ("particles",), ("rlnTomoName",))
    parts = parts.reset_index(drop=True)
    if len(parts) == 0:
        raise DataError(f"{ppath}: no particles in data_particles")
    _check_duplicates(parts, ppath)
    tomo = strings(parts, "rlnTomoName", ppath, "particles")
    infos = read_tomograms_star(tpath)
    unknown = [t for t in dict.fromkeys(tomo) if t not in infos]
    if unknown:
        raise DataError(f"{ppath}: rlnTomoName {unknown[0]!r} is not in {tpath}"
                        + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    optics, pix_ts = _optics(parts, loop_blocks(blocks).get("optics"), infos, tomo, ppath)
    centre = np.stack([infos[t].centre_px * pix for t, pix in zip(tomo, pix_ts, strict=True)])
    pos, rotation, a_sub, origin = particle_geometry(parts, ppath, centre, pix_ts)
    frames = np.array([infos[t].n_frames for t in tomo], dtype=np.int64)
    t_max = int(frames.max())
    vis = _visible(parts, frames, t_max, ppath, tomo, tpath)
    arrays = _tilt_arrays(infos, tomo, pos, -np.einsum("nij,nj->ni", a_sub, origin), t_max)
    du, dv = _defocus_offsets(parts, ppath, frames, t_max)
    arrays["defocus_u_A"] += du
    arrays["defocus_v_A"] += dv
    report = None
    images: ImageSource
    if extract or (extract is None and "rlnImageName" not in parts.columns):
        images, image_index, vis, report = extraction_source(
            infos, tomo, pos + np.einsum("nij,nj->ni", a_sub, origin), vis, optics, pix_ts,
            ov.datadir, ppath, forced=bool(extract))
    else:
        images, image_index, optics.box = _images(parts, ppath, vis, frames, optics.box,
                                                  tomo, optics.pixel_size_A, ov.datadir)
    ov.apply(optics)
    used = {t: infos[t] for t in dict.fromkeys(tomo)}
    meta = {
        "rows_in_file": len(parts), "images_read": int(vis.sum()), "dropped": {},
        "rows_are": "particles",
        "format": "relion5", "source": str(ppath), "particles_path": str(ppath),
        "optimisation_set": None if ppath == Path(path) else str(path),
        "tomograms_path": str(tpath), "general": general,
        "optics_table": loop_blocks(blocks).get("optics"), "relion5_tomograms": used,
        "tomogram_centres_A": {t: i.centre_px * i.pixel_size_A for t, i in used.items()},
        "tomograms": {t: {"size_A": (i.size_px * i.pixel_size_A).tolist()}
                      for t, i in used.items()},
    }
    names = strings(parts, "rlnTomoParticleName", ppath, "particles") \
        if "rlnTomoParticleName" in parts.columns else default_names(tomo)
    out = TiltSeriesParticles(
        names=names, tomo_names=tomo, position_A=pos, rotation=rotation,
        visible=vis, image_index=image_index, images=images, optics=optics,
        table=parts, meta=meta, **arrays,
    )
    return out if report is None else finish_extraction(out, report)

"""Write tilt-series particles as a RELION 5 data set (2D stacks).

Output for ``path = <dir>/<stem>.star`` (or ``<stem>_optimisation_set.star``):

* ``<stem>.star``: particles star (data_general, data_optics, data_particles),
* ``<stem>_tomograms.star``: tomograms star (data_global + one tilt block per tomogram),
* ``<stem>_optimisation_set.star``: optimisation set naming the two (written last),
* ``<stem>_stacks/<tomogram>/<NNNNNN>.mrcs``: float32 2D stacks, one per particle, for
  particles whose images are not already frame-per-tilt-row stacks on disk (in-memory
  simulated data, or images from other layouts). Existing stacks are referenced.

Tomogram-level per-tilt values are taken from the particles (defocus minus the depth
term); values that differ between particles of a tomogram are checked: dose, tilt, CTF
scale and projection must agree, per-particle defocus differences are written to the
``tomohetDefocusU/VOffsetAngst`` vector columns.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tomohet.data.particles import TiltSeriesParticles
from tomohet.data.sources import DataError, ExtractedImageSource
from tomohet.io.common import file_images, first_rows, merge_extra, relative_name
from tomohet.io.conventions import matrix_to_relion, relion_to_matrix
from tomohet.io.mrc import write_mrc
from tomohet.io.relion5 import DEFOCUS_OFFSET_COLS
from tomohet.io.star import format_vector, numeric, write_star
from tomohet.io.tomograms import TiltSeriesInfo, tomograms_blocks
from tomohet.physics.ctf import depth_defocus_offset_A

__all__ = ["write_relion5", "relion5_paths"]

TOL = 1e-3


def relion5_paths(path: Path) -> tuple[Path, Path, Path, Path]:
    """(particles star, tomograms star, optimisation set, stack folder) for ``path``."""
    name = path.name
    if name.endswith("_optimisation_set.star"):
        base = path.with_name(name[: -len("_optimisation_set.star")])
        ppath = base.with_name(base.name + ".star")
    else:
        ppath = path if path.suffix == ".star" else path.with_name(name + ".star")
        base = ppath.with_suffix("")
    return (ppath, base.with_name(base.name + "_tomograms.star"),
            base.with_name(base.name + "_optimisation_set.star"),
            base.with_name(base.name + "_stacks"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "tomo"


def _scalar_meta(meta: dict, key: str, name: str, default: float) -> float:
    value = meta.get(key, default)
    if isinstance(value, dict):
        value = value.get(name, default)
    return float(value)


def _agree(values: np.ndarray, what: str, name: str, t: int, path: Path) -> None:
    if len(values) > 1 and np.abs(values - values[:1]).max() > TOL * max(1.0, np.abs(
            values[0]).max()):
        raise DataError(f"{path}: particles of tomogram {name} disagree on the {what} of tilt "
                        f"{t + 1}; RELION 5 stores one value per tilt and tomogram")


def _tomogram(p: TiltSeriesParticles, name: str, idx: np.ndarray, path: Path,
              resid: list[np.ndarray]) -> TiltSeriesInfo:
    """Tomogram-level tilt series of the particles ``idx``; fills the defocus residuals."""
    raw = (p.meta.get("relion5_tomograms") or {}).get(name)
    t_all = p.n_tilts
    f = raw.n_frames if raw is not None and raw.n_frames <= t_all else t_all
    vis = p.visible[idx, :f]
    ref = np.where(vis.any(axis=0), np.argmax(vis, axis=0), 0)  # row in idx per tilt
    cols = np.arange(f)
    rot = p.tilt_rotation[idx[ref], cols]
    for t in range(f):
        rows = idx[vis[:, t]]
        _agree(p.tilt_rotation[rows, t].reshape(len(rows), 9), "projection", name, t, path)
        for key in ("dose_e_per_A2", "tilt_deg", "ctf_scale", "defocus_angle_deg"):
            _agree(getattr(p, key)[rows, t], key, name, t, path)
    hand = raw.handedness if raw is not None else _scalar_meta(p.meta, "handedness", name, 1.0)
    slope = raw.defocus_slope if raw is not None else 1.0
    dz = depth_defocus_offset_A(torch.as_tensor(rot)[None], torch.as_tensor(p.position_A[idx]),
                                hand).numpy() * slope
    base = []
    for k, arr in enumerate((p.defocus_u_A, p.defocus_v_A)):
        b = arr[idx, :f] - dz
        level = b[ref, cols]
        resid[k][idx, :f] = np.where(vis, b - level, 0.0)
        base.append(level)
    pix = raw.pixel_size_A if raw is not None else _scalar_meta(
        p.meta, "tilt_series_pixel_size_A", name, p.optics.pixel_size_A)
    size = _tomogram_size(p, name, idx, pix, raw)
    proj = np.zeros((f, 4, 4))
    proj[:, :3, :3] = rot
    proj[:, 3, 3] = 1.0
    if raw is not None:
        proj[:, :3, 3] = raw.projection[:f, :3, 3]
        image = raw.image_size_px
    else:
        # no tilt series: its images are taken as the tomogram's x, y size; RELION's
        # convention then maps the tomogram centre to the image centre int(size / 2)
        image = size[:2].copy()
        c_img = np.array([np.floor(image[0] / 2), np.floor(image[1] / 2), 0.0])
        proj[:, :3, 3] = c_img - rot @ np.floor(size / 2)
    grow = dict(raw.global_row) if raw is not None else _global_row(p, name)
    return TiltSeriesInfo(
        name=name, size_px=size, pixel_size_A=pix, handedness=hand, defocus_slope=slope,
        projection=proj, defocus_u_A=base[0], defocus_v_A=base[1],
        defocus_angle_deg=p.defocus_angle_deg[idx[ref], cols],
        dose_e_per_A2=p.dose_e_per_A2[idx[ref], cols], tilt_deg=p.tilt_deg[idx[ref], cols],
        ctf_scale=p.ctf_scale[idx[ref], cols], global_row=grow,
        tilts=raw.tilts.iloc[:f] if raw is not None else pd.DataFrame(),
        from_angles=raw.from_angles if raw is not None else False, image_size_px=image,
        tilts_path=raw.tilts_path if raw is not None else None,
        star_path=raw.star_path if raw is not None else None,
    )


def _tomogram_size(p: TiltSeriesParticles, name: str, idx: np.ndarray, pix: float,
                   raw: TiltSeriesInfo | None) -> np.ndarray:
    if raw is not None and np.isfinite(raw.size_px).all():
        return raw.size_px
    # even sizes: RELION decentres particle coordinates by size / 2.0 but centres the
    # projection on int(size / 2); both agree only for even sizes
    sim = (p.meta.get("tomograms") or {}).get(name)
    if isinstance(sim, dict) and "size_A" in sim:
        return 2 * np.round(np.asarray(sim["size_A"], dtype=np.float64) / pix / 2)
    extent = np.abs(p.position_A[idx]).max(axis=0) / pix
    return 2 * np.ceil(extent) + 2 * p.optics.box


def _global_row(p: TiltSeriesParticles, name: str) -> dict:
    o = p.optics
    return {"rlnTomoName": name, "rlnTomoTiltSeriesName": f"{_safe(name)}_tiltseries.mrc",
            "rlnVoltage": o.voltage_kv, "rlnSphericalAberration": o.cs_mm,
            "rlnAmplitudeContrast": o.amplitude_contrast, "rlnOpticsGroupName": "opticsGroup1"}


def _stacks(p: TiltSeriesParticles, frames: np.ndarray, ppath: Path,
            stack_dir: Path) -> tuple[list[str], list[Path]]:
    """rlnImageName of each particle; writes stacks where the images must be re-laid out.
    Boxes cut from the tilt series on the fly get none (they are cut again on reading)."""
    src = p.images
    names: list[str] = []
    written: list[Path] = []
    if isinstance(src, ExtractedImageSource):
        return names, written
    on_disk = file_images(src)
    for n in range(p.n_particles):
        f = int(frames[n])
        t_vis = np.nonzero(p.visible[n, :f])[0]
        ids = p.image_index[n, t_vis]
        if on_disk and len(ids) and len(set(src.file_index[ids].tolist())) == 1 and \
                np.array_equal(src.frame[ids], t_vis):
            names.append(relative_name(src.files[src.file_index[ids[0]]], ppath))
            continue
        idx = np.where(p.visible[n, :f], p.image_index[n, :f], -1)
        stack = src.read(idx).numpy()
        out = stack_dir / _safe(p.tomo_names[n]) / f"{n + 1:06d}.mrcs"
        written.append(write_mrc(out, stack, p.optics.pixel_size_A, stack=True))
        names.append(relative_name(out, ppath))
    return names, written


def _particles_table(p: TiltSeriesParticles, frames: np.ndarray, images: list[str],
                     resid: list[np.ndarray], extra: pd.DataFrame | None,
                     ppath: Path) -> pd.DataFrame:
    n = p.n_particles
    df = first_rows(p.table, n)
    src = ppath.name
    if all(c in df.columns for c in ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt",
                                     "rlnTomoSubtomogramPsi")):
        a_sub = relion_to_matrix(*[numeric(df, c, ppath, "particles") for c in (
            "rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")])
    else:
        a_sub = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    origin = np.stack([numeric(df, f"rlnOrigin{a}Angst", ppath, "particles", default=0.0)
                       for a in "XYZ"], axis=-1)
    off3d = -np.einsum("nij,nj->ni", a_sub, origin)
    expected = np.einsum("ntij,nj->nti", p.tilt_rotation, off3d)[..., :2]
    diff = np.abs(expected - p.shift_A)[p.visible]
    if diff.size and diff.max() > 0.05:
        raise DataError(f"{src}: per-image particle shifts cannot be written as RELION 5 "
                        "(one 3D origin per particle); re-extract the images centred")
    df = df.drop(columns=[c for c in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
                                      *DEFOCUS_OFFSET_COLS) if c in df.columns])
    pos = p.position_A - off3d
    ang = matrix_to_relion(np.swapaxes(a_sub, -1, -2) @ p.rotation)
    df["rlnTomoName"] = p.tomo_names
    df["rlnTomoParticleName"] = p.names
    if images:
        df["rlnImageName"] = images
    else:  # on-the-fly extraction: no 2D stacks
        df = df.drop(columns=["rlnImageName"], errors="ignore")
    df["rlnTomoVisibleFrames"] = [format_vector(p.visible[i, : frames[i]], integer=True)
                                  for i in range(n)]
    for k, a in enumerate("XYZ"):
        df[f"rlnCenteredCoordinate{a}Angst"] = pos[:, k]
    for k, c in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        df[c] = ang[:, k]
    if any(np.abs(r).max() > 1e-2 for r in resid if r.size):
        for col, r in zip(DEFOCUS_OFFSET_COLS, resid, strict=True):
            df[col] = [format_vector(r[i, : frames[i]]) for i in range(n)]
    return merge_extra(df, extra, n, ppath)


def _optics_table(p: TiltSeriesParticles, df: pd.DataFrame, pix_ts: float) -> pd.DataFrame:
    o = p.optics
    raw = p.meta.get("optics_table")
    if isinstance(raw, pd.DataFrame) and "rlnOpticsGroup" in df.columns and \
            "rlnOpticsGroup" in raw.columns and \
            set(pd.to_numeric(df["rlnOpticsGroup"], errors="coerce").dropna().astype(int)) <= \
            set(pd.to_numeric(raw["rlnOpticsGroup"], errors="coerce").dropna().astype(int)):
        out = raw.reset_index(drop=True).copy()
    else:
        df["rlnOpticsGroup"] = 1
        out = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                            "rlnTomoTiltSeriesPixelSize": [pix_ts],
                            "rlnImageDimensionality": [2],
                            "rlnTomoSubtomogramBinning": [o.pixel_size_A / pix_ts]})
    out["rlnSphericalAberration"] = o.cs_mm
    out["rlnVoltage"] = o.voltage_kv
    out["rlnAmplitudeContrast"] = o.amplitude_contrast
    out["rlnCtfDataAreCtfPremultiplied"] = int(o.ctf_premultiplied)
    out["rlnImagePixelSize"] = o.pixel_size_A
    out["rlnImageSize"] = int(o.box)
    return out


def write_relion5(particles: TiltSeriesParticles, path: str | Path,
                  extra_columns: pd.DataFrame | None = None) -> list[Path]:
    """Write ``particles`` as a complete RELION 5 data set; returns the written paths."""
    p = particles
    if not isinstance(p, TiltSeriesParticles):
        raise DataError(f"{path}: RELION 5 2D-stack output needs tilt-series particles")
    ppath, tpath, opath, stack_dir = relion5_paths(Path(path))
    names = np.asarray(p.tomo_names, dtype=object)
    resid = [np.zeros(p.visible.shape), np.zeros(p.visible.shape)]
    infos = [_tomogram(p, t, np.nonzero(names == t)[0], ppath, resid)
             for t in dict.fromkeys(p.tomo_names)]
    by_name = {i.name: i for i in infos}
    frames = np.array([by_name[t].n_frames for t in p.tomo_names], dtype=np.int64)
    images, written = _stacks(p, frames, ppath, stack_dir)
    df = _particles_table(p, frames, images, resid, extra_columns, ppath)
    optics = _optics_table(p, df, infos[0].pixel_size_A)
    write_star(tpath, tomograms_blocks(infos))
    write_star(ppath, {"general": {"rlnTomoSubTomosAre2DStacks": 1}, "optics": optics,
                       "particles": df})
    write_star(opath, {"": {"rlnTomoParticlesFile": relative_name(ppath, opath),
                            "rlnTomoTomogramsFile": relative_name(tpath, opath)}})
    return [*written, tpath, ppath, opath]

"""Warp/M "particle series" star with one row per tilt image (tomoDRGN, cryoDRGN-ET input).

Facts used (Warp export as read by tomoDRGN's ``TiltSeriesStarfile``):

* Rows of one particle share ``rlnGroupName`` (tomoDRGN) or ``rlnTomoParticleName``; the
  latter is used when present.
* ``rlnImageName`` is ``index@stack.mrcs`` with a 1-based index; two rows may not name the
  same image. Stack paths are found as :func:`tomohet.io.common.resolve_files` says
  (``--datadir`` first).
* ``rlnAngleRot/Tilt/Psi`` are the FULL orientation of that image (tilt included);
  shifts are ``rlnOriginX/Y`` (pixels) or ``rlnOriginX/YAngst``.
* Dose: ``rlnCtfBfactor = -4 * dose`` (``rlnMicrographPreExposure`` wins if present).
* ``rlnCtfScalefactor = cos(tilt)``. The tilt angle is read from ``rlnTomoYTilt`` or
  ``rlnTomoNominalStageTiltAngle`` when present; otherwise it is ``arccos(scale) >= 0``:
  the sign of the tilt is then unknown (``meta["tilt_sign_known"] = False``).
* Pixel size: ``rlnDetectorPixelSize * 10000 / rlnMagnification`` (RELION 3.0 style) or
  ``rlnImagePixelSize`` of an optics block.

Layouts: ``rlnMicrographName`` may name each tilt series or each tilt image,
``rlnTomoName`` may be absent, particles may have different numbers of tilts and group
names may restart in each tilt series. How the tilt series, the particle (= tilt series +
group) and the tilt slot of each row are found is in :mod:`tomohet.io.warp_layout`; the
choice made is in ``meta["warp_tilt_series_from"]``.

Conservation: every row becomes one visible (particle, tilt) image; nothing is filtered.
``meta["rows_in_file"]`` (rows of the data block), ``meta["images_read"]`` (visible
images, always equal) and ``meta["dropped"]`` (empty) say so; a collision (two rows for one
particle and tilt slot) is a DataError, never an overwrite.

tomohet layout: slot 0 is the lowest dose and a slot means the same tilt for every
particle of the tilt series; the star row order is never used. ``rotation[n]`` is the full
rotation of the particle's lowest-dose image
and ``tilt_rotation[n, t] = R_full[n, t] @ rotation[n].T``, unless the star has
tomohet's ``tomohetParticleAngleRot/Tilt/Psi`` columns (written by :func:`write_warp`):
then ``rotation[n]`` is the particle orientation in the tomogram frame they give, so a
RELION 5 -> Warp -> RELION 5 round trip keeps the tomogram geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.particles import Optics, TiltSeriesParticles
from tomohet.data.sources import DataError, ImageSource
from tomohet.io.common import (
    Overrides,
    file_images,
    first_rows,
    merge_extra,
    optics_value,
    relative_name,
    resolve_files,
    split_image_names,
)
from tomohet.io.conventions import matrix_to_relion, relion_to_matrix
from tomohet.io.mrc import mrc_info, write_mrc_stack
from tomohet.io.star import find_block, loop_blocks, numeric, read_star, strings, write_star
from tomohet.io.validate import PIXEL_RANGE_A, check_optics, check_range, warn_pixel_mismatch
from tomohet.io.warp_layout import Layout, check_unique_images, detect_layout

__all__ = ["read_warp", "write_warp", "TILT_COLS", "group_column"]

TILT_COLS = ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle")
# tomohet's own columns: the particle orientation in the tomogram frame (RELION Euler
# angles), so that the tilt geometry survives a round trip (other tools ignore them)
DOSE_MAX = 1e4  # e/A^2; more is a broken file
PARTICLE_ANGLE_COLS = ("tomohetParticleAngleRot", "tomohetParticleAngleTilt",
                       "tomohetParticleAnglePsi")


def group_column(df: pd.DataFrame) -> str | None:
    """The per-particle grouping column of a per-tilt star, if any."""
    for col in ("rlnTomoParticleName", "rlnGroupName"):
        if col in df.columns:
            return col
    return None


def _per_row(df: pd.DataFrame, path: Path, block: str, pixel: float) -> dict[str, Any]:
    """Per-row (per image) values: dose, tilt, scale, defocus, full rotation, shift."""
    if "rlnMicrographPreExposure" in df.columns:
        dose = numeric(df, "rlnMicrographPreExposure", path, block)
        check_range(dose, path, "rlnMicrographPreExposure", block, 0.0, DOSE_MAX,
                    what="a dose in e/A^2")
    else:
        bfactor = numeric(df, "rlnCtfBfactor", path, block)
        check_range(bfactor, path, "rlnCtfBfactor", block, -4.0 * DOSE_MAX, 0.0,
                    what="-4 x dose (a positive B-factor is a negative dose)")
        dose = -bfactor / 4.0
    scale = numeric(df, "rlnCtfScalefactor", path, block, default=1.0)
    check_range(scale, path, "rlnCtfScalefactor", block, 0.0, 1000.0, lo_open=True)
    tilt_col = next((c for c in TILT_COLS if c in df.columns), None)
    if tilt_col is not None:
        tilt = numeric(df, tilt_col, path, block)
    else:
        if "rlnCtfScalefactor" not in df.columns:
            raise DataError(f"{path}: block data_{block} has no column rlnCtfScalefactor "
                            "(nor a tilt angle column) to give the tilt angles")
        tilt = np.rad2deg(np.arccos(np.clip(scale, -1.0, 1.0)))
    if "rlnOriginXAngst" in df.columns or "rlnOriginYAngst" in df.columns:
        origin = np.stack([numeric(df, f"rlnOrigin{a}Angst", path, block, default=0.0)
                           for a in "XY"], axis=-1)
    else:
        origin = np.stack([numeric(df, f"rlnOrigin{a}", path, block, default=0.0)
                           for a in "XY"], axis=-1) * pixel
    full = relion_to_matrix(*[numeric(df, c, path, block) for c in (
        "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")])
    particle = None
    if all(c in df.columns for c in PARTICLE_ANGLE_COLS):
        particle = relion_to_matrix(*[numeric(df, c, path, block) for c in PARTICLE_ANGLE_COLS])
    return {
        "dose": dose, "tilt": tilt, "scale": scale, "shift": -origin, "full": full,
        "particle": particle,
        "du": numeric(df, "rlnDefocusU", path, block),
        "dv": numeric(df, "rlnDefocusV", path, block),
        "da": numeric(df, "rlnDefocusAngle", path, block, default=0.0),
        "tilt_known": np.array(tilt_col is not None),
    }


def _pixel_size(df: pd.DataFrame, opt: pd.DataFrame | None, path: Path) -> tuple[float, str]:
    """(pixel size in A, the column it came from); NaN where the star has none."""
    if opt is not None and "rlnImagePixelSize" in opt.columns:
        return optics_value(df.iloc[:0], opt, "rlnImagePixelSize", path), "rlnImagePixelSize"
    if "rlnImagePixelSize" in df.columns:
        return optics_value(df, None, "rlnImagePixelSize", path), "rlnImagePixelSize"
    if "rlnDetectorPixelSize" in df.columns:
        det = optics_value(df, None, "rlnDetectorPixelSize", path)
        mag = optics_value(df, None, "rlnMagnification", path, default=10000.0)
        check_range(det, path, "rlnDetectorPixelSize", None, 0.0, lo_open=True,
                    what="a detector pixel size in um")
        check_range(mag, path, "rlnMagnification", None, 0.0, lo_open=True,
                    what="a magnification")
        return det * 10000.0 / mag, "rlnDetectorPixelSize"
    return float("nan"), "the stack header"


MAX_HEADER_CHECKS = 5000  # stacks whose headers are all read; beyond, first and last


def _images(df: pd.DataFrame, path: Path, box: int,
            datadir: Path | None) -> tuple[ImageSource, int, float]:
    image_names = strings(df, "rlnImageName", path, "particles")
    frames, files = split_image_names(image_names, path)
    resolved = resolve_files(files, path, "image stack (rlnImageName)", datadir=datadir)
    unique = list(dict.fromkeys(resolved))
    fid = {f: i for i, f in enumerate(unique)}
    file_index = np.array([fid[f] for f in resolved], dtype=np.int64)
    check_unique_images(path, file_index, frames, image_names)
    top = np.full(len(unique), -1, dtype=np.int64)
    np.maximum.at(top, file_index, frames)
    header_px = float("nan")
    check = range(len(unique)) if len(unique) <= MAX_HEADER_CHECKS else [0, len(unique) - 1]
    for k in check:
        f = unique[k]
        info = mrc_info(f)
        ny, nx = info.shape[-2:]
        box = int(nx) if box <= 0 else box
        if not np.isfinite(header_px):
            header_px = info.pixel_size_A
        if (ny, nx) != (box, box):
            raise DataError(f"{path}: rlnImageSize is {box} but the stack {f} holds "
                            f"{ny}x{nx} px images (rlnImageName)")
        count = info.shape[0] if len(info.shape) == 3 else 1
        if top[k] >= count:
            raise DataError(f"{path}: rlnImageName asks for image {top[k] + 1} of {f}, "
                            f"which has {count}")
    source = ImageSource(unique, file_index, frames, box)
    return source, box, header_px


def _tie_break(df: pd.DataFrame, path: Path) -> np.ndarray:
    """Rank of each row's image name: orders equal (dose, tilt) images without row order."""
    names = np.asarray(strings(df, "rlnImageName", path, "particles"), dtype=object)
    return np.unique(names, return_inverse=True)[1].reshape(-1)


def read_warp(path: str | Path, overrides: Overrides | None = None) -> TiltSeriesParticles:
    """Read a per-tilt-image star (Warp/M particle series, tomoDRGN, cryoDRGN-ET input)."""
    p = Path(path)
    blocks = read_star(p)
    block, df = find_block(blocks, p, ("particles",), ("rlnImageName",))
    df = df.reset_index(drop=True)
    if len(df) == 0:
        raise DataError(f"{p}: no images in data_{block}")
    gcol = group_column(df)
    if gcol is None:
        raise DataError(f"{p}: block data_{block} has no column rlnGroupName "
                        "(nor rlnTomoParticleName) to group the tilt images by particle")
    opt = loop_blocks(blocks).get("optics")
    ov = overrides or Overrides()
    pixel, pixel_col = _pixel_size(df, opt, p)
    if ov.pixel_size_A is not None:
        pixel, pixel_col = float(ov.pixel_size_A), "pixel_size_A"
    box = int(optics_value(df.iloc[:0], opt, "rlnImageSize", p, 0)) if opt is not None else 0
    images, box, header_px = _images(df, p, box, ov.datadir)
    if not np.isfinite(pixel):
        pixel = header_px
        if not np.isfinite(pixel) or pixel <= 0:
            raise DataError(f"{p}: no pixel size (rlnDetectorPixelSize, rlnImagePixelSize or "
                            "the stack header); pass pixel_size_A")
    check_range(pixel, p, pixel_col, None, *PIXEL_RANGE_A, lo_open=True,
                what="a pixel size in A")
    if pixel_col not in ("pixel_size_A", "the stack header"):
        warn_pixel_mismatch(pixel, header_px, images.files[0], p, pixel_col)
    row = _per_row(df, p, block, pixel)
    layout = detect_layout(df, p, block, gcol, row["dose"], row["tilt"], _tie_break(df, p))
    return _assemble(p, df, layout, row, images, pixel, box, gcol, opt, ov)


def _assemble(p: Path, df: pd.DataFrame, layout: Layout, row: dict, images: ImageSource,
              pixel: float, box: int, gcol: str, opt: pd.DataFrame | None,
              ov: Overrides) -> TiltSeriesParticles:
    names, pid, slot = layout.names, layout.pid, layout.slot
    n, t = len(names), int(slot.max()) + 1
    visible = np.zeros((n, t), dtype=bool)
    visible[pid, slot] = True
    if int(visible.sum()) != len(df):  # detect_layout refuses collisions; never overwrite
        raise DataError(f"{p}: {len(df)} image rows but only {int(visible.sum())} distinct "
                        "(particle, tilt) pairs")
    image_index = np.full((n, t), -1, dtype=np.int64)
    image_index[pid, slot] = np.arange(len(pid))
    ref = np.argmax(visible, axis=1)  # lowest-dose visible slot of each particle
    ref_row = image_index[np.arange(n), ref]
    rotation = row["full"][ref_row] if row["particle"] is None else row["particle"][ref_row]
    full = np.broadcast_to(np.eye(3), (n, t, 3, 3)).copy()
    full[pid, slot] = row["full"]
    tilt_rotation = np.where(visible[..., None, None],
                             full @ np.swapaxes(rotation, -1, -2)[:, None], np.eye(3))

    def grid(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((n, t, *values.shape[1:]), fill, dtype=np.float64)
        out[pid, slot] = values
        return out

    centred = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    pos = np.zeros((n, 3))
    if all(c in df.columns for c in centred):
        pos = np.stack([numeric(df, c, p, "particles") for c in centred], axis=-1)[ref_row]
    vals = [optics_value(df, opt, c, p) for c in (
        "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")]
    premult = optics_value(df, opt, "rlnCtfDataAreCtfPremultiplied", p, 0.0) > 0.5
    optics = ov.apply(Optics(pixel_size_A=pixel, box=box, voltage_kv=vals[0], cs_mm=vals[1],
                             amplitude_contrast=vals[2], ctf_premultiplied=premult))
    check_optics(optics, p)
    meta = {"format": "warp", "source": str(p), "warp_group_column": gcol,
            "warp_rows": df, "warp_row_particle": [names[i] for i in pid],
            "warp_row_slot": slot, "tilt_sign_known": bool(row["tilt_known"]),
            "warp_group_of_name": layout.group_of_name,
            "warp_tilt_series_from": layout.tilt_series_from,
            "warp_micrograph_per_tilt": layout.micrograph_per_tilt,
            "tomogram_centres_A": {}, "rows_in_file": len(df),
            "images_read": int(visible.sum()), "rows_are": "images", "dropped": {}}
    return TiltSeriesParticles(
        names=names, tomo_names=[str(layout.tomo_row[r]) for r in ref_row], position_A=pos,
        rotation=rotation, tilt_rotation=tilt_rotation, tilt_deg=grid(row["tilt"]),
        dose_e_per_A2=grid(row["dose"]), defocus_u_A=grid(row["du"]),
        defocus_v_A=grid(row["dv"]), defocus_angle_deg=grid(row["da"]),
        ctf_scale=grid(row["scale"], 1.0), shift_A=grid(row["shift"]), visible=visible,
        image_index=image_index, images=images, optics=optics,
        table=df.iloc[ref_row].reset_index(drop=True), meta=meta,
    )


# ---------------------------------------------------------------------------- writing
RELION5_ONLY = ("rlnTomoVisibleFrames", "rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt",
                "rlnTomoSubtomogramPsi", "rlnOriginZAngst", "rlnCoordinateX", "rlnCoordinateY",
                "rlnCoordinateZ", "rlnOriginZ", "tomohetDefocusUOffsetAngst",
                "tomohetDefocusVOffsetAngst", "rlnCtfImage")


def _base_rows(p: TiltSeriesParticles, n_idx: np.ndarray, t_idx: np.ndarray) -> pd.DataFrame:
    """Original per-image rows where the set was read from a per-tilt star, else the
    per-particle table repeated (columns that only make sense per particle dropped)."""
    meta = p.meta
    rows = meta.get("warp_rows")
    if isinstance(rows, pd.DataFrame) and "warp_row_particle" in meta:
        where = {(name, int(s)): i for i, (name, s) in enumerate(
            zip(meta["warp_row_particle"], meta["warp_row_slot"], strict=True))}
        src = [where.get((p.names[n], int(t))) for n, t in zip(n_idx, t_idx, strict=True)]
        if all(s is not None for s in src):
            return rows.iloc[src].reset_index(drop=True)
    table = first_rows(p.table, p.n_particles)
    base = table.iloc[n_idx].reset_index(drop=True)
    return base.drop(columns=[c for c in RELION5_ONLY if c in base.columns])


def _image_names(p: TiltSeriesParticles, n_idx: np.ndarray, t_idx: np.ndarray,
                 path: Path) -> tuple[list[str], list[Path]]:
    ids = p.image_index[n_idx, t_idx]
    src = p.images
    if file_images(src):
        return [f"{int(src.frame[i]) + 1}@{relative_name(src.files[src.file_index[i]], path)}"
                for i in ids], []
    stack = path.with_suffix(".mrcs")
    chunk = 1024

    def chunks():
        for start in range(0, len(ids), chunk):
            yield start, src.read(ids[start : start + chunk]).numpy()

    write_mrc_stack(stack, len(ids), p.optics.box, p.optics.pixel_size_A, chunks())
    rel = relative_name(stack, path)
    return [f"{k + 1}@{rel}" for k in range(len(ids))], [stack]


def write_warp(particles: TiltSeriesParticles, path: str | Path,
               extra_columns: pd.DataFrame | None = None) -> list[Path]:
    """Write a per-tilt-image star (one row per visible image, in dose order per particle).

    Images already in files are referenced; in-memory images go to ``<stem>.mrcs``.
    ``extra_columns`` (one row per particle) are repeated on each image row.
    """
    p = particles
    out = Path(path)
    if not isinstance(p, TiltSeriesParticles):
        raise DataError(f"{out}: the per-tilt (warp) format needs tilt-series particles")
    n_idx, t_idx = np.nonzero(p.visible)
    if len(n_idx) == 0:
        raise DataError(f"{out}: no visible images to write")
    order = np.lexsort((t_idx, p.dose_e_per_A2[n_idx, t_idx], n_idx))
    n_idx, t_idx = n_idx[order], t_idx[order]
    names, written = _image_names(p, n_idx, t_idx, out)
    df = _base_rows(p, n_idx, t_idx)
    gcol = p.meta.get("warp_group_column", "rlnGroupName")
    group_of = p.meta.get("warp_group_of_name") or {}
    df[gcol] = [group_of.get(p.names[n], p.names[n]) for n in n_idx]
    df["rlnImageName"] = names
    ang = matrix_to_relion(p.full_rotation()[n_idx, t_idx])
    for k, c in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        df[c] = ang[:, k]
    part = matrix_to_relion(p.rotation)[n_idx]
    for k, c in enumerate(PARTICLE_ANGLE_COLS):
        df[c] = part[:, k]
    origin = 0.0 - p.shift_A[n_idx, t_idx]  # no -0 in the file
    if "rlnOriginXAngst" in df.columns or "rlnOriginYAngst" in df.columns:
        df = df.drop(columns=[c for c in ("rlnOriginX", "rlnOriginY") if c in df.columns])
        df["rlnOriginXAngst"], df["rlnOriginYAngst"] = origin[:, 0], origin[:, 1]
    else:
        df["rlnOriginX"] = origin[:, 0] / p.optics.pixel_size_A
        df["rlnOriginY"] = origin[:, 1] / p.optics.pixel_size_A
    dose = p.dose_e_per_A2[n_idx, t_idx]
    values = {
        "rlnDefocusU": p.defocus_u_A, "rlnDefocusV": p.defocus_v_A,
        "rlnDefocusAngle": p.defocus_angle_deg, "rlnCtfScalefactor": p.ctf_scale,
        "rlnTomoYTilt": p.tilt_deg,
    }
    for col, arr in values.items():
        df[col] = arr[n_idx, t_idx]
    df["rlnCtfBfactor"] = -4.0 * dose + 0.0
    if p.optics.ctf_premultiplied or "rlnCtfDataAreCtfPremultiplied" in df.columns:
        df["rlnCtfDataAreCtfPremultiplied"] = int(p.optics.ctf_premultiplied)
    if "rlnMicrographPreExposure" in df.columns:
        df["rlnMicrographPreExposure"] = dose
    for k, a in enumerate("XYZ"):
        df[f"rlnCenteredCoordinate{a}Angst"] = p.position_A[n_idx, k]
    # per-tilt micrograph names are kept; the tilt series then goes to rlnTomoName
    per_tilt = bool(p.meta.get("warp_micrograph_per_tilt")) and "rlnMicrographName" in df
    tcol = "rlnTomoName" if per_tilt else next(
        (c for c in ("rlnTomoName", "rlnMicrographName") if c in df.columns),
        "rlnMicrographName")
    df[tcol] = [p.tomo_names[n] for n in n_idx]
    o = p.optics
    df["rlnVoltage"], df["rlnSphericalAberration"] = o.voltage_kv, o.cs_mm
    df["rlnAmplitudeContrast"] = o.amplitude_contrast
    if "rlnImagePixelSize" in df.columns:
        df["rlnImagePixelSize"] = o.pixel_size_A
    df["rlnMagnification"] = 10000.0
    df["rlnDetectorPixelSize"] = o.pixel_size_A
    if extra_columns is not None:
        ex = merge_extra(pd.DataFrame(index=range(p.n_particles)), extra_columns,
                         p.n_particles, out)
        for col in ex.columns:
            df[col] = ex[col].to_numpy()[n_idx]
    write_star(out, {"": df})
    return [*written, out]

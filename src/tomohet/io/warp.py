"""Warp/M "particle series" star with one row per tilt image (tomoDRGN, cryoDRGN-ET input).

Facts used (Warp export as read by tomoDRGN's ``TiltSeriesStarfile``):

* Rows of one particle share ``rlnGroupName`` (tomoDRGN) or ``rlnTomoParticleName``; the
  latter is used when present. Particles are numbered in order of first appearance.
* ``rlnImageName`` is ``index@stack.mrcs`` with a 1-based index.
* ``rlnAngleRot/Tilt/Psi`` are the FULL orientation of that image (tilt included);
  shifts are ``rlnOriginX/Y`` (pixels) or ``rlnOriginX/YAngst``.
* Dose: ``rlnCtfBfactor = -4 * dose`` (``rlnMicrographPreExposure`` wins if present).
* ``rlnCtfScalefactor = cos(tilt)``. The tilt angle is read from ``rlnTomoYTilt`` or
  ``rlnTomoNominalStageTiltAngle`` when present; otherwise it is ``arccos(scale) >= 0``:
  the sign of the tilt is then unknown (``meta["tilt_sign_known"] = False``).
* Pixel size: ``rlnDetectorPixelSize * 10000 / rlnMagnification`` (RELION 3.0 style) or
  ``rlnImagePixelSize`` of an optics block.

tomohet layout: the tilt slots of the particles of one tomogram are the distinct
(dose, tilt) pairs of that tomogram sorted by dose, so slot 0 is the lowest dose and a
slot means the same tilt for every particle of the tomogram; the star row order is
never used. ``rotation[n]`` is the full rotation of the particle's lowest-dose image
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

__all__ = ["read_warp", "write_warp", "TILT_COLS", "group_column"]

TILT_COLS = ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle")
# tomohet's own columns: the particle orientation in the tomogram frame (RELION Euler
# angles), so that the tilt geometry survives a round trip (other tools ignore them)
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
    else:
        dose = -numeric(df, "rlnCtfBfactor", path, block) / 4.0
    scale = numeric(df, "rlnCtfScalefactor", path, block, default=1.0)
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


def _slots(pid: np.ndarray, tomo_of_row: np.ndarray, dose: np.ndarray,
           tilt: np.ndarray) -> np.ndarray:
    """Slot of each row: rank of its (dose, tilt) among its tomogram's distinct pairs.

    A tomogram where one particle has two images with the same pair falls back to the
    rank of the image within its particle (by dose, then tilt).
    """
    slot = np.zeros(len(pid), dtype=np.int64)
    key_d, key_t = np.round(dose, 2), np.round(tilt, 1)
    for tomo in np.unique(tomo_of_row):
        rows = np.nonzero(tomo_of_row == tomo)[0]
        pairs = np.stack([key_d[rows], key_t[rows]], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        order = np.lexsort((uniq[:, 1], uniq[:, 0]))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        s = rank[inv.reshape(-1)]
        combo = pid[rows] * (len(uniq) + 1) + s
        if len(np.unique(combo)) == len(rows):
            slot[rows] = s
            continue
        for p in np.unique(pid[rows]):
            prow = rows[pid[rows] == p]
            o = np.lexsort((prow, tilt[prow], dose[prow]))
            slot[prow[o]] = np.arange(len(prow))
    return slot


def _pixel_size(df: pd.DataFrame, opt: pd.DataFrame | None, path: Path) -> float:
    if opt is not None and "rlnImagePixelSize" in opt.columns:
        return optics_value(df.iloc[:0], opt, "rlnImagePixelSize", path)
    if "rlnImagePixelSize" in df.columns:
        return optics_value(df, None, "rlnImagePixelSize", path)
    if "rlnDetectorPixelSize" in df.columns:
        det = optics_value(df, None, "rlnDetectorPixelSize", path)
        mag = optics_value(df, None, "rlnMagnification", path, default=10000.0)
        return det * 10000.0 / mag
    return float("nan")


def _images(df: pd.DataFrame, path: Path, box: int) -> tuple[ImageSource, int, float]:
    frames, files = split_image_names(strings(df, "rlnImageName", path, "particles"), path)
    resolved = resolve_files(files, path, "image stack (rlnImageName)")
    unique = list(dict.fromkeys(resolved))
    fid = {f: i for i, f in enumerate(unique)}
    header_px = float("nan")
    for f in unique[:1] + unique[-1:]:
        info = mrc_info(f)
        ny, nx = info.shape[-2:]
        box = int(nx) if box <= 0 else box
        header_px = info.pixel_size_A
        if (ny, nx) != (box, box):
            raise DataError(f"{path}: rlnImageSize is {box} but the stack {f} holds "
                            f"{ny}x{nx} px images (rlnImageName)")
        count = info.shape[0] if len(info.shape) == 3 else 1
        top = int(frames[np.array([r == f for r in resolved])].max())
        if top >= count:
            raise DataError(f"{path}: rlnImageName asks for image {top + 1} of {f}, "
                            f"which has {count}")
    source = ImageSource(unique, np.array([fid[f] for f in resolved]), frames, box)
    return source, box, header_px


def read_warp(path: str | Path, overrides: Overrides | None = None) -> TiltSeriesParticles:
    """Read a per-tilt-image star (Warp/M particle series, tomoDRGN input)."""
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
    pixel = ov.pixel_size_A if ov.pixel_size_A is not None else _pixel_size(df, opt, p)
    box = int(optics_value(df.iloc[:0], opt, "rlnImageSize", p, 0)) if opt is not None else 0
    images, box, header_px = _images(df, p, box)
    if not np.isfinite(pixel):
        pixel = header_px
    if not np.isfinite(pixel) or pixel <= 0:
        raise DataError(f"{p}: no pixel size (rlnDetectorPixelSize, rlnImagePixelSize or the "
                        "stack header); pass pixel_size_A")
    row = _per_row(df, p, block, pixel)
    group = strings(df, gcol, p, block)
    names = list(dict.fromkeys(group))
    pid = np.asarray(pd.Index(names).get_indexer(group), dtype=np.int64)
    tcol = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in df.columns), None)
    tomo_row = np.asarray(strings(df, tcol, p, block) if tcol else ["tomo"] * len(df))
    slot = _slots(pid, tomo_row, row["dose"], row["tilt"])
    return _assemble(p, df, names, pid, slot, tomo_row, row, images, pixel, box, gcol, opt, ov)


def _assemble(p: Path, df: pd.DataFrame, names: list[str], pid: np.ndarray, slot: np.ndarray,
              tomo_row: np.ndarray, row: dict, images: ImageSource, pixel: float, box: int,
              gcol: str, opt: pd.DataFrame | None, ov: Overrides) -> TiltSeriesParticles:
    n, t = len(names), int(slot.max()) + 1
    visible = np.zeros((n, t), dtype=bool)
    visible[pid, slot] = True
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
    meta = {"format": "warp", "source": str(p), "warp_group_column": gcol,
            "warp_rows": df, "warp_row_particle": [names[i] for i in pid],
            "warp_row_slot": slot, "tilt_sign_known": bool(row["tilt_known"]),
            "tomogram_centres_A": {}}
    return TiltSeriesParticles(
        names=names, tomo_names=[str(tomo_row[r]) for r in ref_row], position_A=pos,
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
    df[gcol] = [p.names[n] for n in n_idx]
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
    tcol = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in df.columns),
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

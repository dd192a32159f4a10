"""RELION 5 tomograms star: a ``data_global`` table plus one per-tilt table per tomogram.

The per-tilt table is a block named after the tomogram, either in the tomograms star
(WarpTools exports, tomohet's writer) or in the tilt-series star that
``rlnTomoTiltSeriesStarFile`` names (RELION 5 pipelines; resolved next to the tomograms
star, in its parent folders - the RELION project folder - or the working folder).

Per-tilt rows are kept in file order: frame ``f`` of a particle's 2D stack is tilt row
``f`` (never dose order). The projection comes from ``rlnTomoProjX/Y/Z/W`` (rows of a
4x4 matrix) when present (RELION 5 itself prefers them), else from ``rlnTomoXTilt``
(default 0), ``rlnTomoYTilt``, ``rlnTomoZRot``, ``rlnTomoXShiftAngst`` and
``rlnTomoYShiftAngst`` as in RELION 5's ``Tomogram::setProjectionMatrix``. The dose of a
tilt is ``rlnMicrographPreExposure``, the dose before that image, as RELION uses it
(half the image's own dose is not added). The tilt angle is ``rlnTomoYTilt`` when
present, else derived from the projection (:func:`tilt_angle_from_matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.data.sources import DataError
from tomohet.io.conventions import relion_projection_matrix
from tomohet.io.mrc import mrc_info
from tomohet.io.star import (
    format_vector,
    key_values,
    loop_blocks,
    numeric,
    read_star,
    require_columns,
    resolve_path,
    strings,
    vectors,
)
from tomohet.io.validate import PIXEL_RANGE_A, check_range, check_unique, strict_int
from tomohet.physics.geometry import tilt_angle_from_matrix

__all__ = ["TiltSeriesInfo", "read_tomograms_star", "tomograms_blocks", "PROJ_COLS"]

PROJ_COLS = ("rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW")
TS_FILE_COL = "rlnTomoTiltSeriesStarFile"
ANGLE_COLS = ("rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst")


@dataclass
class TiltSeriesInfo:
    """One tomogram of a tomograms star. Per-tilt arrays have shape (F,) in file order."""

    name: str
    size_px: np.ndarray  # (3,) tomogram size in tilt-series pixels (NaN if unknown)
    pixel_size_A: float  # tilt-series pixel size (NaN if unknown)
    handedness: float
    defocus_slope: float
    projection: np.ndarray  # (F, 4, 4) tomogram pixel -> tilt image pixel
    defocus_u_A: np.ndarray
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    dose_e_per_A2: np.ndarray
    tilt_deg: np.ndarray
    ctf_scale: np.ndarray
    global_row: dict[str, Any] = field(default_factory=dict)
    tilts: pd.DataFrame = field(default_factory=pd.DataFrame)
    # True when ``projection`` was built from rlnTomoXTilt/YTilt/ZRot and shifts
    from_angles: bool = False
    # (2,) x, y size of the tilt images (tilt-series stack header), None if unknown
    image_size_px: np.ndarray | None = None
    # the star file holding the per-tilt rows (relative tilt image names resolve from it)
    tilts_path: Path | None = None
    # the tomograms star holding the data_global row
    star_path: Path | None = None

    @property
    def n_frames(self) -> int:
        return int(self.projection.shape[0])

    @property
    def centre_px(self) -> np.ndarray:
        """(3,) RELION's decentring centre ``size / 2.0`` in tilt-series pixels."""
        return self.size_px / 2.0


def _matrix_rows(df: pd.DataFrame, path: Path, block: str) -> np.ndarray:
    rows = []
    for c in PROJ_COLS:
        vs = vectors(df, c, path, block)
        for r, v in enumerate(vs):
            if len(v) != 4:
                raise DataError(f"{path}: block data_{block}, column {c}: row {r + 1} has "
                                f"{len(v)} values, expected 4 (a row of the 4x4 matrix)")
        rows.append(np.stack(vs) if vs else np.zeros((0, 4)))
    proj = np.stack(rows, axis=1)
    bad = np.nonzero(np.abs(proj[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) > 1e-6)[0]
    if len(bad):
        raise DataError(f"{path}: block data_{block}, column rlnTomoProjW: row {bad[0] + 1} "
                        "is not [0,0,0,1]")
    return proj


def tilt_image_size(grow: dict[str, Any], star: Path) -> np.ndarray | None:
    """(2,) x, y size of the tilt images from the header of ``rlnTomoTiltSeriesName``
    (RELION's image centre is ``int(size / 2)`` of the tilt series stack); None when the
    stack is not there or not readable (only the projection translations need it)."""
    name = str(grow.get("rlnTomoTiltSeriesName", "")).strip()
    if not name:
        return None
    name = name[:-4] if name.endswith(":mrc") else name
    path = resolve_path(name, star, bases=list(star.resolve().parents)[:3])
    if not path.is_file():
        return None
    try:
        shape = mrc_info(path).shape
    except DataError:
        return None
    return np.array([shape[-1], shape[-2]], dtype=np.float64)


def _projection(df: pd.DataFrame, path: Path, block: str, size_px: np.ndarray,
                pixel_size: float, image_px: np.ndarray | None) -> np.ndarray:
    if all(c in df.columns for c in PROJ_COLS):
        return _matrix_rows(df, path, block)
    if all(c in df.columns for c in ANGLE_COLS):
        if not np.isfinite(pixel_size) or not np.isfinite(size_px).all():
            raise DataError(f"{path}: tomogram {block}: rlnTomoTiltSeriesPixelSize and "
                            "rlnTomoSizeX/Y/Z are needed to build projections from angles")
        xtilt = numeric(df, "rlnTomoXTilt", path, block, default=0.0)
        vals = [numeric(df, c, path, block) for c in ANGLE_COLS]
        image = size_px[:2] if image_px is None else image_px
        return relion_projection_matrix(xtilt, vals[0], vals[1], vals[2], vals[3],
                                         size_px, image, pixel_size)
    missing = next(c for c in PROJ_COLS if c not in df.columns)
    raise DataError(f"{path}: block data_{block} has no column {missing} (nor the "
                    "rlnTomoYTilt/rlnTomoZRot/rlnTomoX/YShiftAngst alternative)")


def _global_values(grow: dict[str, Any], path: Path, name: str) -> dict[str, Any]:
    """Checked numbers of one data_global row: size (3,), pixel size, hand, slope."""
    where = f"data_global, tomogram {name}"

    def g(key: str, default: float = float("nan")) -> float:
        if key not in grow:
            return default
        try:
            return float(grow[key])
        except (TypeError, ValueError):
            raise DataError(f"{path}: {where}, {key}: {grow[key]!r} is not a number") from None

    size = np.array([float(strict_int(grow[f"rlnTomoSize{a}"], path, f"{where}, "
                                      f"rlnTomoSize{a}", lo=1))
                     if f"rlnTomoSize{a}" in grow else np.nan for a in "XYZ"])
    pix_col = "rlnTomoTiltSeriesPixelSize" if "rlnTomoTiltSeriesPixelSize" in grow \
        else "rlnMicrographOriginalPixelSize"
    pix = g(pix_col)
    if pix_col in grow:
        check_range(pix, path, f"{where}, {pix_col}", None, *PIXEL_RANGE_A, lo_open=True)
    if "rlnTomoHand" not in grow:
        raise DataError(f"{path}: block data_global has no column rlnTomoHand")
    hand = g("rlnTomoHand")
    if hand not in (-1.0, 1.0):
        raise DataError(f"{path}: {where}, rlnTomoHand: {grow['rlnTomoHand']!r} is not "
                        "1 or -1")
    slope = g("rlnTomoDefocusSlope", 1.0)
    check_range(slope, path, f"{where}, rlnTomoDefocusSlope", None, -1e3, 1e3)
    for key, lo, hi, open_ in (("rlnVoltage", 0.0, 1e4, True),
                               ("rlnSphericalAberration", -1e3, 1e3, False),
                               ("rlnAmplitudeContrast", 0.0, 1.0, False)):
        if key in grow:
            check_range(g(key), path, f"{where}, {key}", None, lo, hi, lo_open=open_)
    return {"size": size, "pix": pix, "hand": hand, "slope": slope}


def _check_tilt_rows(df: pd.DataFrame, path: Path, block: str) -> None:
    if "rlnMicrographName" in df.columns:
        check_unique(strings(df, "rlnMicrographName", path, block), path, "rlnMicrographName",
                     block, "tilt image (two tilt rows point at one image)")


def _tilt_info(df: pd.DataFrame, path: Path, block: str, grow: dict[str, Any],
               name: str, star: Path) -> TiltSeriesInfo:
    v = _global_values(grow, star, name)
    require_columns(df, ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
                         "rlnMicrographPreExposure"], path, block)
    _check_tilt_rows(df, path, block)
    image_px = tilt_image_size(grow, star) if "rlnTomoProjX" not in df.columns else None
    proj = _projection(df, path, block, v["size"], v["pix"], image_px)
    if "rlnTomoYTilt" in df.columns:
        tilt = numeric(df, "rlnTomoYTilt", path, block)
    else:
        tilt = tilt_angle_from_matrix(torch.as_tensor(proj[:, :3, :3])).numpy()
    dose = numeric(df, "rlnMicrographPreExposure", path, block)
    check_range(dose, path, "rlnMicrographPreExposure", block, 0.0, 1e6, what="a dose")
    scale = numeric(df, "rlnCtfScalefactor", path, block, default=1.0)
    check_range(scale, path, "rlnCtfScalefactor", block, 0.0, 1e3)
    return TiltSeriesInfo(
        name=name, size_px=v["size"], pixel_size_A=v["pix"], handedness=v["hand"],
        defocus_slope=v["slope"], projection=proj,
        defocus_u_A=numeric(df, "rlnDefocusU", path, block),
        defocus_v_A=numeric(df, "rlnDefocusV", path, block),
        defocus_angle_deg=numeric(df, "rlnDefocusAngle", path, block),
        dose_e_per_A2=dose, tilt_deg=np.asarray(tilt, dtype=np.float64), ctf_scale=scale,
        global_row=grow, tilts=df.reset_index(drop=True),
        from_angles="rlnTomoProjX" not in df.columns, image_size_px=image_px,
        tilts_path=path, star_path=star,
    )


def _tilt_block(p: Path, blocks: dict, tilt_blocks: list[str], grow: dict[str, Any],
                name: str, i: int, count: int) -> tuple[Path, pd.DataFrame, str]:
    """(file, per-tilt table, block name) of tomogram ``name`` (row ``i`` of data_global).

    RELION 5 keeps the per-tilt rows in a tilt-series star named by
    ``rlnTomoTiltSeriesStarFile`` (a block named after the tomogram); exports such as
    WarpTools put a block named after the tomogram into the tomograms star itself;
    RELION 4 used ``data_tomo_<index>``.
    """
    ts_file = grow.get(TS_FILE_COL)
    if name not in blocks and ts_file is not None and str(ts_file).strip():
        ts_path = resolve_path(str(ts_file), p, bases=list(p.resolve().parents)[:3])
        if not ts_path.exists():
            raise DataError(f"{p}: data_global, {TS_FILE_COL} of {name}: {ts_file} not found "
                            f"(looked next to {p} and in its parent folders)")
        ts_blocks = read_star(ts_path)
        loops = loop_blocks(ts_blocks)
        block_name = name if name in loops else next(iter(loops), None)
        if block_name is None:
            raise DataError(f"{ts_path}: no per-tilt loop block for tomogram {name}")
        return ts_path, loops[block_name], block_name
    block = name if name in blocks else f"tomo_{i}" if f"tomo_{i}" in blocks else None
    if block is None and len(tilt_blocks) == count:
        block = tilt_blocks[i]
    if block is None or not isinstance(blocks[block], pd.DataFrame):
        raise DataError(f"{p}: no per-tilt block data_{name} for tomogram {name} "
                        f"(file truncated?) and no {TS_FILE_COL} in data_global")
    return p, blocks[block], block


def read_tomograms_star(path: str | Path) -> dict[str, TiltSeriesInfo]:
    """Tomograms star -> ``{rlnTomoName: TiltSeriesInfo}`` in file order."""
    p = Path(path)
    blocks = read_star(p)
    loops = loop_blocks(blocks)
    if "global" in loops:
        glob = loops["global"]
    elif "global" in blocks:  # a single tomogram written as key-value block
        glob = pd.DataFrame([key_values(blocks, "global")])
    else:
        raise DataError(f"{p}: no data_global block (not a RELION tomograms star?)")
    require_columns(glob, ["rlnTomoName"], p, "global")
    names = strings(glob, "rlnTomoName", p, "global")
    if len(set(names)) != len(names):
        raise DataError(f"{p}: duplicate rlnTomoName in data_global")
    tilt_blocks = [k for k in blocks if k != "global"]
    out: dict[str, TiltSeriesInfo] = {}
    for i, name in enumerate(names):
        grow = glob.iloc[i].to_dict()
        file, tilts, block = _tilt_block(p, blocks, tilt_blocks, grow, name, i, len(names))
        info = _tilt_info(tilts, file, block, grow, name, p)
        if "rlnTomoFrameCount" in grow:
            count = strict_int(grow["rlnTomoFrameCount"], p,
                               f"data_global, tomogram {name}, rlnTomoFrameCount", lo=1)
            if count != info.n_frames:
                raise DataError(f"{p}: tomogram {name} has {info.n_frames} tilt rows in "
                                f"{file} (data_{block}) but rlnTomoFrameCount {count} (a tilt "
                                "row deleted or the file truncated?)")
        if info.n_frames == 0:
            raise DataError(f"{p}: tomogram {name} has no tilt rows")
        out[name] = info
    return out


def _existing(name: Any, star: Path | None) -> str | None:
    """The absolute path of a tilt image file named in ``star`` (``N@`` prefix and
    ``:mrc`` suffix kept), or None when it is not there."""
    text = str(name).strip() if name is not None else ""
    if not text or star is None:
        return None
    prefix, _, rest = text.rpartition("@") if "@" in text else ("", "", text)
    suffix = ":mrc" if rest.endswith(":mrc") else ""
    path = resolve_path(rest[: len(rest) - len(suffix)], star,
                        bases=list(star.resolve().parents)[:3])
    if not path.is_file():
        return None
    return (f"{prefix}@" if prefix else "") + str(path.resolve()) + suffix


def _absolute_tilt_images(info: TiltSeriesInfo, row: dict[str, Any],
                          tilts: pd.DataFrame) -> None:
    """Tilt-series and tilt-image names that exist become absolute, so that a tomograms
    star written elsewhere still finds them (on-the-fly extraction reads them)."""
    ts = _existing(row.get("rlnTomoTiltSeriesName"), info.star_path)
    if ts is not None:
        row["rlnTomoTiltSeriesName"] = ts
    if "rlnMicrographName" in tilts.columns and len(tilts):
        found = [_existing(v, info.tilts_path) for v in tilts["rlnMicrographName"]]
        if all(f is not None for f in found):
            tilts["rlnMicrographName"] = found


def tomograms_blocks(infos: list[TiltSeriesInfo]) -> dict[str, pd.DataFrame]:
    """Blocks for :func:`~tomohet.io.star.write_star`: data_global + one block per tomogram.

    Raw columns of ``global_row``/``tilts`` are kept; the owned ones are overwritten
    from the arrays. ``rlnTomoProjX..W`` (which RELION prefers over the angles) are the
    matrices in RELION's convention (``Tomogram::setProjectionMatrix``): tilt-image pixel
    = ``int(image size / 2) + shift / pixel size + R @ (x - int(tomogram size / 2))``
    for a tomogram pixel ``x``. A tomogram read from angles whose tilt-series stack was
    not found keeps its angle columns only, so that RELION uses the real image centre.
    Tilt-series and tilt-image files that exist are named by absolute paths.
    """
    rows = []
    blocks: dict[str, pd.DataFrame] = {}
    for info in infos:
        row = dict(info.global_row)
        row.pop(TS_FILE_COL, None)  # the per-tilt rows are written inline
        row.update({
            "rlnTomoName": info.name, "rlnTomoFrameCount": info.n_frames,
            "rlnTomoSizeX": int(round(info.size_px[0])),
            "rlnTomoSizeY": int(round(info.size_px[1])),
            "rlnTomoSizeZ": int(round(info.size_px[2])),
            "rlnTomoHand": info.handedness, "rlnTomoTiltSeriesPixelSize": info.pixel_size_A,
        })
        if info.defocus_slope != 1.0 or "rlnTomoDefocusSlope" in row:
            row["rlnTomoDefocusSlope"] = info.defocus_slope
        rows.append(row)
        f = info.n_frames
        tilts = info.tilts.copy() if len(info.tilts) == f else pd.DataFrame(index=range(f))
        tilts = tilts.reset_index(drop=True)
        _absolute_tilt_images(info, row, tilts)
        if info.from_angles and info.image_size_px is None:
            # the image centre int(size / 2) of the tilt series is unknown: RELION builds the
            # matrices itself from the angle columns kept in ``tilts``
            tilts = tilts.drop(columns=[c for c in PROJ_COLS if c in tilts.columns])
        else:
            for i, col in enumerate(PROJ_COLS):
                tilts[col] = [format_vector(info.projection[k, i]) for k in range(f)]
        tilts["rlnTomoYTilt"] = info.tilt_deg
        tilts["rlnDefocusU"] = info.defocus_u_A
        tilts["rlnDefocusV"] = info.defocus_v_A
        tilts["rlnDefocusAngle"] = info.defocus_angle_deg
        tilts["rlnCtfScalefactor"] = info.ctf_scale
        tilts["rlnMicrographPreExposure"] = info.dose_e_per_A2
        blocks[info.name] = tilts
    glob = pd.DataFrame(rows)
    return {"global": glob, **blocks}

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

    @property
    def n_frames(self) -> int:
        return int(self.projection.shape[0])

    @property
    def centre_px(self) -> np.ndarray:
        """(3,) RELION's decentring centre ``size / 2.0`` in tilt-series pixels."""
        return self.size_px / 2.0


def _projection(df: pd.DataFrame, path: Path, block: str, size_px: np.ndarray,
                pixel_size: float) -> np.ndarray:
    if all(c in df.columns for c in PROJ_COLS):
        rows = [np.stack(vectors(df, c, path, block)) if len(df) else np.zeros((0, 4))
                for c in PROJ_COLS]
        for c, r in zip(PROJ_COLS, rows, strict=True):
            if r.ndim != 2 or r.shape[1] != 4:
                raise DataError(f"{path}: block data_{block}, column {c}: expected 4 values")
        return np.stack(rows, axis=1)
    if all(c in df.columns for c in ANGLE_COLS):
        if not np.isfinite(pixel_size) or not np.isfinite(size_px).all():
            raise DataError(f"{path}: tomogram {block}: rlnTomoTiltSeriesPixelSize and "
                            "rlnTomoSizeX/Y/Z are needed to build projections from angles")
        xtilt = numeric(df, "rlnTomoXTilt", path, block, default=0.0)
        vals = [numeric(df, c, path, block) for c in ANGLE_COLS]
        return relion_projection_matrix(xtilt, vals[0], vals[1], vals[2], vals[3],
                                         size_px, size_px[:2], pixel_size)
    missing = next(c for c in PROJ_COLS if c not in df.columns)
    raise DataError(f"{path}: block data_{block} has no column {missing} (nor the "
                    "rlnTomoYTilt/rlnTomoZRot/rlnTomoX/YShiftAngst alternative)")


def _tilt_info(df: pd.DataFrame, path: Path, block: str, grow: dict[str, Any],
               name: str) -> TiltSeriesInfo:
    def g(key: str, default: float = float("nan")) -> float:
        try:
            return float(grow.get(key, default))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: data_global, {key} of {name} is not a number") from exc

    size = np.array([g("rlnTomoSizeX"), g("rlnTomoSizeY"), g("rlnTomoSizeZ")])
    pix = g("rlnTomoTiltSeriesPixelSize", g("rlnMicrographOriginalPixelSize"))
    if "rlnTomoHand" not in grow:
        raise DataError(f"{path}: block data_global has no column rlnTomoHand")
    require_columns(df, ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
                         "rlnMicrographPreExposure"], path, block)
    proj = _projection(df, path, block, size, pix)
    if "rlnTomoYTilt" in df.columns:
        tilt = numeric(df, "rlnTomoYTilt", path, block)
    else:
        tilt = tilt_angle_from_matrix(torch.as_tensor(proj[:, :3, :3])).numpy()
    return TiltSeriesInfo(
        name=name, size_px=size, pixel_size_A=pix, handedness=g("rlnTomoHand"),
        defocus_slope=g("rlnTomoDefocusSlope", 1.0), projection=proj,
        defocus_u_A=numeric(df, "rlnDefocusU", path, block),
        defocus_v_A=numeric(df, "rlnDefocusV", path, block),
        defocus_angle_deg=numeric(df, "rlnDefocusAngle", path, block),
        dose_e_per_A2=numeric(df, "rlnMicrographPreExposure", path, block),
        tilt_deg=np.asarray(tilt, dtype=np.float64),
        ctf_scale=numeric(df, "rlnCtfScalefactor", path, block, default=1.0),
        global_row=grow, tilts=df.reset_index(drop=True),
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
        info = _tilt_info(tilts, file, block, grow, name)
        count = grow.get("rlnTomoFrameCount")
        if count is not None and int(count) != info.n_frames:
            raise DataError(f"{p}: tomogram {name} has {info.n_frames} tilt rows but "
                            f"rlnTomoFrameCount {int(count)} (file truncated?)")
        if info.n_frames == 0:
            raise DataError(f"{p}: tomogram {name} has no tilt rows")
        out[name] = info
    return out


def tomograms_blocks(infos: list[TiltSeriesInfo]) -> dict[str, pd.DataFrame]:
    """Blocks for :func:`~tomohet.io.star.write_star`: data_global + one block per tomogram.

    Raw columns of ``global_row``/``tilts`` are kept; the owned ones are overwritten
    from the arrays.
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

"""RELION 3.1/4 (and RELION 5 3D-mode) subtomogram star: one 3D volume per particle.

* ``rlnImageName``: the subtomogram (MRC volume); ``rlnCtfImage``: its 3D CTF/weight
  volume. The layout of the weights is detected from their shape (see
  :mod:`tomohet.data.weights`): (D, D, D//2+1) RELION 4 pseudo-subtomogram weights,
  (D, D, D) centred RELION 3.0 CTF volumes.
* Coordinates: ``rlnCenteredCoordinateX/Y/ZAngst`` (RELION 5) or ``rlnCoordinateX/Y/Z``
  in tilt-series pixels (``rlnTomoTiltSeriesPixelSize`` of the optics, else the image
  pixel size). Pixel coordinates are made relative to the tomogram centre when the
  tomogram sizes are known (``tomograms=`` star), else they stay corner-relative
  (``meta["tomogram_centres_A"]`` empty). The rotated origin
  ``A_subtomo @ rlnOriginX/Y/ZAngst`` is subtracted; it is kept in the table and
  written back (subtomogram sets have no per-particle shift field).
* ``rlnCtfDataAreCtfPremultiplied`` in the optics (RELION 4 pseudo-subtomograms: 1).
* Tomogram: ``rlnTomoName`` (RELION 4) or ``rlnMicrographName`` (RELION 3.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.particles import SubtomogramParticles
from tomohet.data.sources import DataError, VolumeSource
from tomohet.data.weights import detect_weight_layout
from tomohet.io.common import (
    Overrides,
    first_rows,
    merge_extra,
    optics_value,
    relative_name,
    resolve_files,
    tomogram_centres_A,
)
from tomohet.io.conventions import matrix_to_relion, relion_to_matrix
from tomohet.io.mrc import mrc_info
from tomohet.io.relion_geometry import particle_geometry
from tomohet.io.star import (
    find_block,
    key_values,
    loop_blocks,
    numeric,
    read_star,
    strings,
    write_star,
)
from tomohet.io.subtomo import check_volumes, volume_files_for_writing, volume_optics
from tomohet.io.validate import (
    PIXEL_RANGE_A,
    check_half_sets,
    check_optics,
    check_range,
    check_unique,
)

__all__ = ["read_relion4", "write_relion4"]

SUB_COLS = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")


def _tomogram_centres(tomograms: str | Path | None, pix: float) -> dict[str, np.ndarray]:
    """{name: centre (3,) in A} from the data_global block of a tomograms star."""
    if tomograms is None:
        return {}
    t = Path(tomograms)
    blocks = read_star(t)
    glob = loop_blocks(blocks).get("global")
    if glob is None:
        glob = pd.DataFrame([key_values(blocks, "global")]) if "global" in blocks else None
    if glob is None or "rlnTomoName" not in glob.columns:
        raise DataError(f"{t}: no data_global block with rlnTomoName")
    names = strings(glob, "rlnTomoName", t, "global")
    size = np.stack([numeric(glob, f"rlnTomoSize{a}", t, "global") for a in "XYZ"], axis=-1)
    ts = numeric(glob, "rlnTomoTiltSeriesPixelSize", t, "global", default=pix)
    return {n: size[i] / 2.0 * ts[i] for i, n in enumerate(names)}


def _pixel(parts: pd.DataFrame, opt: pd.DataFrame | None,
           path: Path) -> tuple[float | None, str]:
    """(pixel size in A or None, the column(s) it came from)."""
    if opt is not None and "rlnImagePixelSize" in opt.columns:
        return optics_value(parts.iloc[:0], opt, "rlnImagePixelSize", path), \
            "rlnImagePixelSize"
    if "rlnDetectorPixelSize" in parts.columns:
        det = numeric(parts, "rlnDetectorPixelSize", path, "particles")
        mag = numeric(parts, "rlnMagnification", path, "particles", default=1e4)
        check_range(det, path, "rlnDetectorPixelSize", "particles", 0.0, 1e6, lo_open=True)
        check_range(mag, path, "rlnMagnification", "particles", 0.0, 1e9, lo_open=True)
        return float(det[0] * 1e4 / mag[0]), "rlnDetectorPixelSize / rlnMagnification"
    return None, "pixel size"


def _check_rows(parts: pd.DataFrame, p: Path, block: str) -> None:
    dup = parts.astype(str).duplicated()
    if dup.any():
        r = int(np.nonzero(dup.to_numpy())[0][0])
        raise DataError(f"{p}: block data_{block}: row {r + 1} is a duplicate of an earlier "
                        "row (rlnImageName)")
    for col in ("rlnImageName", "rlnTomoParticleName"):
        if col in parts.columns:
            check_unique(strings(parts, col, p, block), p, col, block)
    check_half_sets(parts, p, block)


def read_relion4(path: str | Path, tomograms: str | Path | None = None,
                 overrides: Overrides | None = None) -> SubtomogramParticles:
    """Read a subtomogram particle star (RELION 3.1/4 layout) -> SubtomogramParticles."""
    p = Path(path)
    ov = overrides or Overrides()
    blocks = read_star(p)
    block, parts = find_block(blocks, p, ("particles",), ("rlnImageName",))
    parts = parts.reset_index(drop=True)
    if len(parts) == 0:
        raise DataError(f"{p}: no particles in data_{block}")
    opt = loop_blocks(blocks).get("optics")
    _check_rows(parts, p, block)
    vols = resolve_files(strings(parts, "rlnImageName", p, block), p,
                         "subtomogram (rlnImageName)", datadir=ov.datadir)
    optics = volume_optics(vols[0], ov, p, *_pixel(parts, opt, p))
    box = optics_value(parts.iloc[:0], opt, "rlnImageSize", p, optics.box) \
        if opt is not None else optics.box
    if box != optics.box:
        raise DataError(f"{p}: rlnImageSize is {box:g} but the subtomogram {vols[0]} "
                        f"(rlnImageName) is {optics.box}^3 voxels")
    for col, attr, default in (("rlnVoltage", "voltage_kv", 300.0),
                               ("rlnSphericalAberration", "cs_mm", 2.7),
                               ("rlnAmplitudeContrast", "amplitude_contrast", 0.07)):
        setattr(optics, attr, optics_value(parts, opt, col, p, default))
    check_optics(optics, p)
    check_volumes(vols, (optics.box,) * 3, p, "rlnImageName",
                  None if ov.pixel_size_A is not None else optics.pixel_size_A)
    if ov.ctf_premultiplied is None:
        optics.ctf_premultiplied = optics_value(
            parts, opt, "rlnCtfDataAreCtfPremultiplied", p, 0.0) > 0.5
    coord_pix = optics_value(parts.iloc[:0], opt, "rlnTomoTiltSeriesPixelSize", p,
                             optics.pixel_size_A) if opt is not None else optics.pixel_size_A
    check_range(coord_pix, p, "rlnTomoTiltSeriesPixelSize", "optics", *PIXEL_RANGE_A,
                lo_open=True, what="a pixel size in A")
    tcol = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in parts.columns), None)
    tomo = strings(parts, tcol, p, block) if tcol else ["tomo"] * len(parts)
    centres = _tomogram_centres(tomograms, coord_pix)
    missing = [t for t in dict.fromkeys(tomo) if centres and t not in centres]
    if missing:
        raise DataError(f"{p}: tomogram {missing[0]!r} is not in {tomograms}")
    centre = np.stack([centres.get(t, np.zeros(3)) for t in tomo])
    pos, rotation, _, _ = particle_geometry(parts, p, centre,
                                            np.full(len(parts), coord_pix))
    weights, layout = None, "none"
    if "rlnCtfImage" in parts.columns:
        ctf = resolve_files(strings(parts, "rlnCtfImage", p, block), p,
                            "CTF volume (rlnCtfImage)", datadir=ov.datadir)
        shape = mrc_info(ctf[0]).shape
        try:
            layout = detect_weight_layout(shape, optics.box)
        except DataError as exc:
            raise DataError(f"{p}: rlnCtfImage {ctf[0]}: {exc}") from exc
        check_volumes(ctf, shape, p, "rlnCtfImage")
        weights = VolumeSource(ctf, (int(shape[0]), int(shape[1]), int(shape[2])))
    names = strings(parts, "rlnTomoParticleName", p, block) \
        if "rlnTomoParticleName" in parts.columns else strings(parts, "rlnImageName", p, block)
    general = key_values(blocks, "general")
    meta = {"rows_in_file": len(parts), "images_read": len(parts), "dropped": {},
            "rows_are": "images",
            "format": "relion5" if general else "relion4", "source": str(p),
            "optics_table": opt, "relion_general": general,
            "coordinate_pixel_size_A": coord_pix, "tomogram_centres_A": centres,
            "tomogram_column": tcol or "rlnTomoName"}
    b = optics.box
    return SubtomogramParticles(
        names=names, tomo_names=tomo, position_A=pos, rotation=rotation,
        volumes=VolumeSource(vols, (b, b, b)), weights=weights, optics=optics,
        weight_layout=layout, table=parts, meta=meta,
    )


def _optics_table(p: SubtomogramParticles, df: pd.DataFrame, coord_pix: float) -> pd.DataFrame:
    o = p.optics
    raw = p.meta.get("optics_table")
    if isinstance(raw, pd.DataFrame) and len(raw) and "rlnOpticsGroup" in df.columns:
        out = raw.reset_index(drop=True).copy()
    else:
        df["rlnOpticsGroup"] = 1
        out = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"]})
    out["rlnSphericalAberration"], out["rlnVoltage"] = o.cs_mm, o.voltage_kv
    out["rlnAmplitudeContrast"] = o.amplitude_contrast
    out["rlnImagePixelSize"], out["rlnImageSize"] = o.pixel_size_A, int(o.box)
    out["rlnImageDimensionality"] = 3
    out["rlnCtfDataAreCtfPremultiplied"] = int(o.ctf_premultiplied)
    out["rlnTomoTiltSeriesPixelSize"] = coord_pix
    return out


def write_relion4(particles: SubtomogramParticles, path: str | Path,
                  extra_columns: pd.DataFrame | None = None,
                  relion5: bool = False) -> list[Path]:
    """Write a subtomogram star (volumes already on disk are referenced; in-memory ones
    are written to ``<stem>_subtomos/``). ``relion5`` adds ``data_general`` with
    ``rlnTomoSubTomosAre2DStacks 0``. Returns the written paths."""
    p = particles
    out = Path(path)
    if not isinstance(p, SubtomogramParticles):
        raise DataError(f"{out}: the subtomogram star needs 3D subtomogram particles; "
                        "reconstruct subtomograms first (tomohet.sim.subtomo)")
    vols, ctfs, written = volume_files_for_writing(p, out)
    n = p.n_particles
    df = first_rows(p.table, n)
    if all(c in df.columns for c in SUB_COLS):
        a_sub = relion_to_matrix(*[numeric(df, c, out, "particles") for c in SUB_COLS])
    else:
        a_sub = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    origin = np.stack([numeric(df, f"rlnOrigin{a}Angst", out, "particles", default=0.0)
                       for a in "XYZ"], axis=-1)
    pos = p.position_A + np.einsum("nij,nj->ni", a_sub, origin)
    coord_pix = float(p.meta.get("coordinate_pixel_size_A", p.optics.pixel_size_A))
    corner = (pos + tomogram_centres_A(p)) / coord_pix
    ang = matrix_to_relion(np.swapaxes(a_sub, -1, -2) @ p.rotation)
    df[p.meta.get("tomogram_column", "rlnTomoName")] = p.tomo_names
    df["rlnTomoParticleName"] = p.names
    for k, a in enumerate("XYZ"):
        df[f"rlnCoordinate{a}"] = corner[:, k]
        df[f"rlnCenteredCoordinate{a}Angst"] = pos[:, k]
    for k, c in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        df[c] = ang[:, k]
    df["rlnImageName"] = [relative_name(v, out) for v in vols]
    if ctfs is not None:
        df["rlnCtfImage"] = [relative_name(c, out) for c in ctfs]
    elif "rlnCtfImage" in df.columns:
        df = df.drop(columns=["rlnCtfImage"])
    df = merge_extra(df, extra_columns, n, out)
    optics = _optics_table(p, df, coord_pix)
    blocks: dict = {}
    if relion5 or p.meta.get("relion_general"):
        blocks["general"] = {"rlnTomoSubTomosAre2DStacks": 0}
    blocks.update({"optics": optics, "particles": df})
    write_star(out, blocks)
    return [*written, out]

"""Particle position and orientation from RELION 4/5 particle star columns.

Shared by the RELION 5 tilt-series reader and the RELION 3.1/4 subtomogram reader:
orientation ``A = A_subtomo @ A_particle`` (``rlnTomoSubtomogramRot/Tilt/Psi`` and
``rlnAngleRot/Tilt/Psi``; identity when absent), position from
``rlnCenteredCoordinateX/Y/ZAngst`` or from pixel coordinates ``rlnCoordinateX/Y/Z``
relative to the tomogram centre, minus the rotated origin ``A_subtomo @ rlnOriginX/Y/ZAngst``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.sources import DataError
from tomohet.io.conventions import relion_to_matrix
from tomohet.io.star import numeric
from tomohet.io.validate import check_finite

__all__ = ["particle_geometry"]


def _euler(df: pd.DataFrame, cols: tuple[str, str, str], path: Path) -> np.ndarray:
    if not any(c in df.columns for c in cols):
        return np.broadcast_to(np.eye(3), (len(df), 3, 3)).copy()
    ang = [numeric(df, c, path, "particles", default=0.0) for c in cols]
    return relion_to_matrix(*ang)


def particle_geometry(
    parts: pd.DataFrame, path: Path, centre_A: np.ndarray | None, pix: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(position_A (N,3), rotation (N,3,3), A_subtomo (N,3,3), origin_A (N,3)).

    ``centre_A`` (N, 3) is the tomogram centre in A (needed only for pixel coordinates,
    which are multiplied by ``pix`` (N,) A/px); positions are relative to it.
    """
    a_part = _euler(parts, ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"), path)
    a_sub = _euler(parts, ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt",
                           "rlnTomoSubtomogramPsi"), path)
    origin = np.stack([numeric(parts, f"rlnOrigin{a}Angst", path, "particles", default=0.0)
                       for a in "XYZ"], axis=-1)
    centred = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    if all(c in parts.columns for c in centred):
        pos = np.stack([numeric(parts, c, path, "particles") for c in centred], axis=-1)
    else:
        coords = np.stack([numeric(parts, f"rlnCoordinate{a}", path, "particles")
                           for a in "XYZ"], axis=-1)
        centre = np.zeros((len(parts), 3)) if centre_A is None else centre_A
        if not np.isfinite(centre).all():
            raise DataError(f"{path}: pixel coordinates need the tomogram size "
                            "(rlnTomoSizeX/Y/Z in the tomograms star)")
        with np.errstate(over="ignore", invalid="ignore"):
            pos = coords * pix[:, None] - centre
        for k, a in enumerate("XYZ"):
            check_finite(pos[:, k], path, f"rlnCoordinate{a}", "particles")
    with np.errstate(over="ignore", invalid="ignore"):
        pos = pos - np.einsum("nij,nj->ni", a_sub, origin)
    for k, a in enumerate("XYZ"):
        check_finite(pos[:, k], path, f"rlnCenteredCoordinate{a}Angst or rlnOrigin{a}Angst",
                     "particles")
    return pos, a_sub @ a_part, a_sub, origin

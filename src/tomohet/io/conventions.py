"""Rotation conventions of the file formats, converted to tomohet's RELION matrices.

tomohet's particle matrix ``A`` (see :mod:`tomohet.physics.geometry`) maps a point of the
reference to the tomogram frame. All functions here take and return float64 numpy
arrays with arbitrary leading dimensions; angles are in degrees.

* RELION: ``A = euler_to_matrix(rot, tilt, psi)`` (ZYZ, RELION's ``Euler_angles2matrix``).
* RELION 5 tilt geometry (``Tomogram::setProjectionMatrix``): the tomogram -> image
  rotation is ``Rz(rlnTomoZRot) @ Ry(rlnTomoYTilt) @ Rx(rlnTomoXTilt)`` with right-handed
  (active) axis rotations; the full 4x4 matrix adds the centring translations
  ``s2 @ s1 @ R @ s0`` with ``s0 = -int(size/2)``, ``s1`` = shifts / pixel size,
  ``s2 = +int(image size/2)``.
* STOPGAP (AV3/TOM convention, ``sg_euler2matrix(phi, psi, the)``):
  ``A = Rz(psi) @ Rx(the) @ Rz(phi)``, active; STOPGAP uses it to map reference-frame
  vectors into the tomogram (e.g. ``sg_motl_geometric_cleaning``).
* Dynamo (``dynamo_euler2matrix(tdrot, tilt, narot)``) returns
  ``Rz(narot) @ Rx(tilt) @ Rz(tdrot)``, which maps tomogram vectors into the reference
  frame, so ``A`` is its transpose. This matches Dynamo's own ``dynamo__table2motl``
  (phi = -narot, psi = -tdrot, theta = -tilt) and the RELION conversion used by public
  converters (rot = narot - 90, tilt = tilt, psi = tdrot + 90).
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.geometry import euler_to_matrix, matrix_to_euler

__all__ = [
    "relion_to_matrix", "matrix_to_relion", "axis_rotation", "relion_tilt_rotation",
    "relion_projection_matrix", "stopgap_to_matrix", "matrix_to_stopgap",
    "dynamo_to_matrix", "matrix_to_dynamo", "zxz_to_matrix", "matrix_to_zxz",
]


def _arr(x: np.ndarray | float) -> np.ndarray:
    return np.array(x, dtype=np.float64)


def relion_to_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION Euler angles (...,) -> (..., 3, 3) float64 matrices."""
    m = euler_to_matrix(torch.as_tensor(_arr(rot)), torch.as_tensor(_arr(tilt)),
                        torch.as_tensor(_arr(psi)))
    return m.numpy()


def matrix_to_relion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) RELION (rot, tilt, psi) in degrees."""
    return matrix_to_euler(torch.as_tensor(_arr(matrix))).numpy()


def axis_rotation(axis: str, angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed (active) rotation about ``axis`` in {"x", "y", "z"}: (...,) -> (..., 3, 3)."""
    a = np.deg2rad(_arr(angle_deg))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    rows = {
        "x": [o, z, z, z, c, -s, z, s, c],
        "y": [c, z, s, z, o, z, -s, z, c],
        "z": [c, -s, z, s, c, z, z, z, o],
    }[axis]
    return np.stack(rows, axis=-1).reshape(*a.shape, 3, 3)


def relion_tilt_rotation(xtilt: np.ndarray, ytilt: np.ndarray, zrot: np.ndarray) -> np.ndarray:
    """Tomogram -> tilt-image rotation of RELION 5 tilt angles: (...,) -> (..., 3, 3)."""
    return axis_rotation("z", zrot) @ axis_rotation("y", ytilt) @ axis_rotation("x", xtilt)


def relion_projection_matrix(
    xtilt: np.ndarray, ytilt: np.ndarray, zrot: np.ndarray,
    xshift_A: np.ndarray, yshift_A: np.ndarray,
    tomo_size_px: np.ndarray, image_size_px: np.ndarray, pixel_size_A: float,
) -> np.ndarray:
    """Full RELION 5 projection matrices (..., 4, 4) from tilt angles and shifts.

    ``tomo_size_px`` (3,) and ``image_size_px`` (2,) give the integer centres
    ``int(size / 2)`` that RELION uses; shifts are in Angstrom.
    """
    r = relion_tilt_rotation(xtilt, ytilt, zrot)
    c_tomo = np.floor(np.asarray(tomo_size_px, dtype=np.float64) / 2)
    c_img = np.zeros(3)
    c_img[:2] = np.floor(np.asarray(image_size_px, dtype=np.float64)[:2] / 2)
    shift = np.stack([_arr(xshift_A), _arr(yshift_A), np.zeros_like(_arr(xshift_A))], -1)
    out = np.zeros((*r.shape[:-2], 4, 4))
    out[..., :3, :3] = r
    out[..., :3, 3] = shift / pixel_size_A + c_img - r @ c_tomo
    out[..., 3, 3] = 1.0
    return out


def zxz_to_matrix(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``Rz(a) @ Rx(b) @ Rz(c)`` with active rotations: (...,) -> (..., 3, 3)."""
    return axis_rotation("z", a) @ axis_rotation("x", b) @ axis_rotation("z", c)


def matrix_to_zxz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zxz_to_matrix`: (..., 3, 3) -> (..., 3) angles (a, b, c).

    ``b`` is in [0, 180]; at b = 0 or 180 (gimbal lock) ``c`` is set to 0.
    """
    m = _arr(m)
    sb = np.hypot(m[..., 0, 2], m[..., 1, 2])
    b = np.arctan2(sb, m[..., 2, 2])
    regular = sb > 1e-9
    a = np.where(regular, np.arctan2(m[..., 0, 2], -m[..., 1, 2]),
                 np.arctan2(m[..., 1, 0], m[..., 0, 0]))
    c = np.where(regular, np.arctan2(m[..., 2, 0], m[..., 2, 1]), 0.0)
    return np.rad2deg(np.stack([a, b, c], axis=-1))


def stopgap_to_matrix(phi: np.ndarray, psi: np.ndarray, the: np.ndarray) -> np.ndarray:
    """STOPGAP (phi, psi, the) -> tomohet ``A`` = ``Rz(psi) @ Rx(the) @ Rz(phi)``."""
    return zxz_to_matrix(psi, the, phi)


def matrix_to_stopgap(matrix: np.ndarray) -> np.ndarray:
    """tomohet ``A`` (..., 3, 3) -> STOPGAP (..., 3) as (phi, psi, the)."""
    psi, the, phi = np.moveaxis(matrix_to_zxz(matrix), -1, 0)
    return np.stack([phi, psi, the], axis=-1)


def dynamo_to_matrix(tdrot: np.ndarray, tilt: np.ndarray, narot: np.ndarray) -> np.ndarray:
    """Dynamo (tdrot, tilt, narot) -> tomohet ``A`` = ``dynamo_euler2matrix(...).T``."""
    return np.swapaxes(zxz_to_matrix(narot, tilt, tdrot), -1, -2)


def matrix_to_dynamo(matrix: np.ndarray) -> np.ndarray:
    """tomohet ``A`` (..., 3, 3) -> Dynamo (..., 3) as (tdrot, tilt, narot)."""
    narot, tilt, tdrot = np.moveaxis(matrix_to_zxz(np.swapaxes(_arr(matrix), -1, -2)), -1, 0)
    return np.stack([tdrot, tilt, narot], axis=-1)

"""Rotation conventions, in one place.

tomohet follows RELION's conventions everywhere:

* Euler angles ``(rot, tilt, psi)`` in degrees, ZYZ, with the matrix of
  ``Euler_angles2matrix``: ``A = Rz(psi) @ Ry(tilt) @ Rz(rot)`` where ``Rz`` and ``Ry``
  are the *passive* (coordinate-frame) rotations below.
* ``A`` maps a point ``p`` of the reference (particle) frame to the image frame: the image
  of ``p`` lands at ``(A @ p)[:2]``.  Equivalently the projection is
  ``image(u) = integral V(A.T @ [u, z]) dz``.
* In tomography the full matrix of tilt image ``f`` is ``P_f @ A_subtomo @ A_particle``
  where ``P_f`` is the 3x3 rotation part of the tilt's projection matrix (tomogram frame
  -> tilt-image frame) and ``A_subtomo @ A_particle`` maps the reference frame into the
  tomogram frame (RELION 5 ``ParticleSet::getMatrix3x3``).
* Tilt about the tomogram's Y axis by ``theta`` degrees uses the *active* rotation
  ``tilt_matrix(theta) = [[c, 0, s], [0, 1, 0], [-s, 0, c]]`` so that a point at height
  ``z`` on the tilt axis projects to ``x = sin(theta) * z``; :func:`tilt_angle_from_matrix`
  inverts it and is insensitive to an in-plane rotation applied after the tilt.

All functions take tensors with arbitrary leading batch dimensions and return new
tensors on the input's device and dtype.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "euler_to_matrix",
    "matrix_to_euler",
    "rot_z",
    "rot_y",
    "rot_x",
    "tilt_matrix",
    "tilt_angle_from_matrix",
    "random_rotations",
    "rotation_angle_deg",
    "small_rotation",
]


def _as_float(x: torch.Tensor | float) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def rot_z(angle_deg: torch.Tensor | float) -> torch.Tensor:
    """Passive rotation about z: ``[[c, s, 0], [-s, c, 0], [0, 0, 1]]``. (...,) -> (..., 3, 3)."""
    a = torch.deg2rad(_as_float(angle_deg))
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, s, z, -s, c, z, z, z, o], dim=-1).reshape(*a.shape, 3, 3)


def rot_y(angle_deg: torch.Tensor | float) -> torch.Tensor:
    """Passive rotation about y: ``[[c, 0, -s], [0, 1, 0], [s, 0, c]]``. (...,) -> (..., 3, 3)."""
    a = torch.deg2rad(_as_float(angle_deg))
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, -s, z, o, z, s, z, c], dim=-1).reshape(*a.shape, 3, 3)


def rot_x(angle_deg: torch.Tensor | float) -> torch.Tensor:
    """Active rotation about x: ``[[1, 0, 0], [0, c, -s], [0, s, c]]``. (...,) -> (..., 3, 3)."""
    a = torch.deg2rad(_as_float(angle_deg))
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*a.shape, 3, 3)


def euler_to_matrix(
    rot_deg: torch.Tensor | float,
    tilt_deg: torch.Tensor | float,
    psi_deg: torch.Tensor | float,
) -> torch.Tensor:
    """RELION ZYZ Euler angles (degrees) -> rotation matrices.

    Shapes: broadcastable (...,) -> (..., 3, 3).
    """
    rot, tilt, psi = torch.broadcast_tensors(
        _as_float(rot_deg), _as_float(tilt_deg), _as_float(psi_deg)
    )
    return rot_z(psi) @ rot_y(tilt) @ rot_z(rot)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices -> RELION Euler angles ``(rot, tilt, psi)`` in degrees.

    Follows RELION's ``Euler_matrix2angles`` including its handling of the gimbal-lock
    case (tilt = 0 or 180: rot is set to 0). Shapes: (..., 3, 3) -> (..., 3).
    """
    a = matrix
    eps = torch.finfo(torch.float32).eps
    abs_sb = torch.sqrt(a[..., 0, 2] ** 2 + a[..., 1, 2] ** 2)
    regular = abs_sb > 16 * eps
    gamma = torch.atan2(a[..., 1, 2], -a[..., 0, 2])
    alpha = torch.atan2(a[..., 2, 1], a[..., 2, 0])
    sg = torch.sin(gamma)
    sign_a12 = torch.where(a[..., 1, 2] >= 0, 1.0, -1.0).to(a.dtype)
    sign_from_cos = torch.where(-a[..., 0, 2] / torch.cos(gamma) >= 0, 1.0, -1.0).to(a.dtype)
    sign_sb = torch.where(
        sg.abs() < eps, sign_from_cos, torch.where(sg > 0, sign_a12, -sign_a12)
    )
    beta = torch.atan2(sign_sb * abs_sb, a[..., 2, 2])
    # gimbal lock
    upright = a[..., 2, 2] > 0
    gamma_lock = torch.where(
        upright,
        torch.atan2(-a[..., 1, 0], a[..., 0, 0]),
        torch.atan2(a[..., 1, 0], -a[..., 0, 0]),
    )
    beta_lock = torch.where(upright, torch.zeros_like(beta), torch.full_like(beta, math.pi))
    alpha = torch.where(regular, alpha, torch.zeros_like(alpha))
    beta = torch.where(regular, beta, beta_lock)
    gamma = torch.where(regular, gamma, gamma_lock)
    return torch.rad2deg(torch.stack([alpha, beta, gamma], dim=-1))


def tilt_matrix(tilt_deg: torch.Tensor | float) -> torch.Tensor:
    """Active rotation about the y (tilt) axis: tomogram frame -> tilt-image frame.

    Shapes: (...,) -> (..., 3, 3).
    """
    return rot_y(-_as_float(tilt_deg))


def tilt_angle_from_matrix(projection_rotation: torch.Tensor) -> torch.Tensor:
    """Signed tilt angle (degrees) of tomogram->image rotations, inverse of :func:`tilt_matrix`.

    Uses the beam direction (third row), so an in-plane rotation after the tilt (a tilt
    axis that is not along y in the image) does not change it. (..., 3, 3) -> (...,).
    """
    r = projection_rotation
    return torch.rad2deg(torch.atan2(-r[..., 2, 0], r[..., 2, 2]))


def random_rotations(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Rotations uniformly distributed on SO(3) (from uniform unit quaternions). -> (n, 3, 3)."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    m = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(n, 3, 3)
    return m.to(dtype)


def rotation_angle_deg(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (degrees) of the rotation taking ``r1`` to ``r2``. (..., 3, 3) x2 -> (...,)."""
    rel = r2 @ r1.transpose(-1, -2)
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


def small_rotation(axis_angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors whose norm is the angle in degrees.

    (..., 3) -> (..., 3, 3) via Rodrigues' formula; used for local pose searches.
    """
    v = torch.deg2rad(axis_angle_deg)
    theta = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = v / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    kmat = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(
        *v.shape[:-1], 3, 3
    )
    th = theta[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(kmat)
    return eye + torch.sin(th) * kmat + (1 - torch.cos(th)) * (kmat @ kmat)

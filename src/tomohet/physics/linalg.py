"""Small batched linear algebra that cannot fail on singular or near-singular systems.

Normal equations ``(sum w z z^T + ridge) u = b`` are symmetric positive semi-definite in
exact arithmetic, but in float32 with LU (``torch.linalg.solve``) a voxel whose weights are
large next to the ridge can come out numerically singular, and whether it does depends on
the CPU's instruction set and BLAS. :func:`solve_spd` works in float64 with a Cholesky
factorisation (``cholesky_ex``: no exception); the systems whose factorisation fails or has
a pivot below ``rcond`` x the largest diagonal entry are solved in the least-squares sense
by a pseudo-inverse (eigendecomposition, eigenvalues below ``rcond`` x the largest
dropped), which is what ``numpy.linalg.lstsq`` returns: an exactly singular or all-zero
system gives the minimum-norm least-squares solution, never an error or a huge value.
:func:`symmetric_eigh` falls back from torch to SciPy's LAPACK driver when torch's does
not converge.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["solve_spd", "inv_spd", "symmetric_eigh"]

_CHUNK = 1 << 18  # systems per float64 chunk (bounds the temporary memory)


def _pinv_solve(a: torch.Tensor, b: torch.Tensor, rcond: float) -> torch.Tensor:
    """Minimum-norm solution of symmetric systems a (M, n, n) x = b (M, n, m), float64."""
    w, v = symmetric_eigh(a)
    cut = rcond * w.abs().amax(-1, keepdim=True)
    inv_w = torch.where(w.abs() > cut, 1.0 / torch.where(w == 0, torch.ones_like(w), w),
                        torch.zeros_like(w))
    return v @ (inv_w[..., None] * (v.transpose(-2, -1) @ b))


def _solve_chunk(a: torch.Tensor, b: torch.Tensor, rcond: float) -> torch.Tensor:
    """a (M, n, n), b (M, n, m) float64 -> x (M, n, m)."""
    chol, info = torch.linalg.cholesky_ex(a)
    # a pivot below rcond x the largest diagonal entry: numerically singular, and the
    # Cholesky solution would be dominated by rounding -> least squares instead
    piv = chol.diagonal(dim1=-2, dim2=-1) ** 2
    top = a.diagonal(dim1=-2, dim2=-1).amax(-1)
    ok = (info == 0) & (piv.amin(-1) > rcond * top) & torch.isfinite(piv).all(-1)
    x = torch.empty_like(b)
    if bool(ok.any()):
        x[ok] = torch.cholesky_solve(b[ok], chol[ok])
    if not bool(ok.all()):
        bad = ~ok
        x[bad] = _pinv_solve(a[bad], b[bad], rcond)
    return x


def solve_spd(a: torch.Tensor, b: torch.Tensor, rcond: float = 1e-12) -> torch.Tensor:
    """Solve symmetric positive (semi-)definite systems ``a x = b``, batched.

    a (..., n, n) real; b (..., n, m) real or complex (a complex right-hand side is
    solved as its real and imaginary parts). Computed in float64; returns b's dtype
    (complex64 for a complex b of lower precision than complex128). Never raises for a
    singular system: see the module docstring.
    """
    if a.shape[-1] != a.shape[-2] or b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve_spd: shapes {tuple(a.shape)} and {tuple(b.shape)}")
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    n, m = a.shape[-1], b.shape[-1]
    cplx = b.is_complex()
    out_dtype = b.dtype
    a64 = a.expand(*batch, n, n).reshape(-1, n, n)
    b2 = b.expand(*batch, n, m)
    b64 = torch.cat([b2.real, b2.imag], -1) if cplx else b2
    b64 = b64.reshape(-1, n, b64.shape[-1])
    x = torch.empty(b64.shape, dtype=torch.float64, device=b.device)
    for s in range(0, a64.shape[0], _CHUNK):
        sl = slice(s, s + _CHUNK)
        x[sl] = _solve_chunk(a64[sl].double(), b64[sl].double(), rcond)
    if cplx:
        x = torch.complex(x[..., :m], x[..., m:])
    return x.reshape(*batch, n, m).to(out_dtype)


def inv_spd(a: torch.Tensor, **kw) -> torch.Tensor:
    """Inverse of symmetric positive definite matrices (..., n, n) by :func:`solve_spd`."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand(a.shape)
    return solve_spd(a, eye, **kw)


def symmetric_eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of symmetric (..., n, n), in float64.

    torch's driver first; if it does not converge, SciPy's ``evr`` driver on the CPU.
    """
    a64 = a.double()
    a64 = 0.5 * (a64 + a64.transpose(-2, -1))
    try:
        return torch.linalg.eigh(a64)
    except RuntimeError:  # torch.linalg.LinAlgError: no convergence
        import scipy.linalg

        arr = a64.detach().cpu().numpy()
        flat = arr.reshape(-1, *arr.shape[-2:])
        ws, vs = zip(*(scipy.linalg.eigh(m, driver="evr") for m in flat), strict=True)
        w = torch.as_tensor(np.stack(ws).reshape(arr.shape[:-1]), device=a.device)
        v = torch.as_tensor(np.stack(vs).reshape(arr.shape), device=a.device)
        return w, v

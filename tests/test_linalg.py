"""Batched SPD solves that never fail: against numpy's solve and lstsq."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet.physics.linalg import inv_spd, solve_spd, symmetric_eigh


def _spd(rng: np.random.Generator, m: int, n: int, rank: int | None = None) -> np.ndarray:
    r = n if rank is None else rank
    z = rng.normal(size=(m, n, r))
    return z @ z.transpose(0, 2, 1)


def test_regular_systems_match_numpy_solve():
    rng = np.random.default_rng(0)
    a = _spd(rng, 50, 4) + 0.1 * np.eye(4)
    b = rng.normal(size=(50, 4, 2)) + 1j * rng.normal(size=(50, 4, 2))
    x = solve_spd(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b).to(torch.complex64))
    assert x.dtype == torch.complex64 and x.shape == (50, 4, 2)
    ref = np.linalg.solve(a, b)
    # float32 inputs: the reference uses the float64 originals
    np.testing.assert_allclose(x.numpy(), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    inv = inv_spd(torch.as_tensor(a))
    np.testing.assert_allclose(inv.numpy(), np.linalg.inv(a), rtol=1e-8, atol=1e-10)


def test_exactly_singular_batch_gives_lstsq_solution():
    """Rank-deficient, all-zero and rounding-indefinite systems: no error, and the
    minimum-norm least-squares solution numpy's lstsq gives, also for b outside the range."""
    rng = np.random.default_rng(1)
    n = 4
    a = np.concatenate([_spd(rng, 6, n), _spd(rng, 6, n, rank=2), np.zeros((2, n, n)),
                        np.ones((2, n, n))])  # regular, rank 2, zero, rank 1 (all ones)
    b = rng.normal(size=(len(a), n, 1))
    b[6:9] = a[6:9] @ rng.normal(size=(3, n, 1))  # some consistent, the rest not
    with pytest.raises(RuntimeError):  # the plain solve fails on such a batch
        torch.linalg.solve(torch.as_tensor(a), torch.as_tensor(b))
    x = solve_spd(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    assert np.isfinite(x).all()
    for i in range(len(a)):
        ref = np.linalg.lstsq(a[i], b[i], rcond=None)[0]
        np.testing.assert_allclose(x[i], ref, rtol=1e-6, atol=1e-8, err_msg=f"system {i}")
    assert np.abs(x[12:14]).max() == 0.0  # all-zero systems -> 0


def test_near_singular_float32_normal_equations():
    """Ridge-regularised float32 normal equations whose weights dwarf the ridge (the
    regress_ft failure): finite, and solve the float64 system to its conditioning."""
    rng = np.random.default_rng(2)
    z = np.concatenate([np.ones((30, 1)), rng.normal(size=(30, 2))], axis=1)
    w = rng.uniform(0, 1, size=(200, 30)) * np.logspace(0, 9, 200)[:, None]
    a = np.einsum("vn,ni,nj->vij", w, z, z)
    a[:, 2] = a[:, 1]  # duplicated coordinate: singular up to the ridge
    a[:, :, 2] = a[:, :, 1]
    a += 1e-6 * np.eye(3)
    b = a @ rng.normal(size=(200, 3, 1))
    x = solve_spd(torch.as_tensor(a, dtype=torch.float32),
                  torch.as_tensor(b, dtype=torch.float32)).numpy()
    assert np.isfinite(x).all()
    resid = np.linalg.norm(a @ x - b, axis=(1, 2)) / np.linalg.norm(b, axis=(1, 2))
    assert resid.max() < 1e-3


def test_symmetric_eigh_matches_numpy():
    rng = np.random.default_rng(3)
    a = _spd(rng, 3, 5, rank=3)
    w, v = symmetric_eigh(torch.as_tensor(a, dtype=torch.float32))
    assert w.dtype == torch.float64
    np.testing.assert_allclose(w.numpy(), np.linalg.eigvalsh(a), rtol=1e-5, atol=1e-5)
    rec = v.numpy() @ (w.numpy()[..., None] * v.numpy().transpose(0, 2, 1))
    np.testing.assert_allclose(rec, a, atol=1e-4)

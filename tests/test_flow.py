"""flow: TomoFlow-style displacement fields against the wedge-filtered average."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tomohet.data.sources import DataError
from tomohet.methods.flow import Flow, warp


@pytest.fixture(scope="module")
def one_mode():
    """ADK moved along its lowest normal mode only (c0), high SNR, small box."""
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    base = get_preset("normalmode")
    structure = dict(base.structure, motions=[base.structure["motions"][0]])
    cfg = get_preset("normalmode", n_particles=40, n_tomograms=1, n_tilts=21, snr=10.0,
                     structure=structure)
    return simulate(cfg, seed=3)


def test_warp_by_a_constant_field_is_a_shift():
    """Warping by a constant field is a shift: by whole voxels the sampled Gaussian
    moved exactly; by half a voxel the mean of its two neighbours (trilinear)."""
    d = 16
    ax = torch.arange(d, dtype=torch.float32)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")

    def blob(cx, cy, cz):
        return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 2.0**2))

    field = torch.zeros(1, 3, d, d, d)
    field[:, 0], field[:, 1], field[:, 2] = 1.0, -2.0, 0.5  # u = (1, -2, 0.5) voxels
    moved = warp(blob(8, 8, 8)[None], field)[0]
    # V(x + u) of a blob at c is a blob at c - u
    expect = 0.5 * (blob(7, 10, 7) + blob(7, 10, 8))
    inner = (slice(3, 13),) * 3
    assert (moved - expect)[inner].abs().max() < 1e-5


def _fit(particles, **kw):
    params = dict(cluster=None, progress=False, n_components=3)
    params.update(kw)
    return Flow(**params).fit(particles)


def test_recovers_the_mode_coordinate_at_high_snr(one_mode):
    m = _fit(one_mode.particles)
    c0 = one_mode.truth["c0"].to_numpy()
    assert abs(spearmanr(m.transform()[:, 0], c0).statistic) > 0.9


def test_row_permutation_and_batch_size_do_not_change_fields(one_mode):
    p = one_mode.particles.subset(np.arange(12))
    a = _fit(p, batch_size=12, n_iter=10).fields_
    perm = np.random.default_rng(0).permutation(12)
    b = _fit(p.subset(perm), batch_size=5, n_iter=10).fields_
    # equal up to float round-off (the average is summed in another order, batched
    # kernels round differently), which the iterative fit can carry to a few hundredths
    # of an A at a control point whose trilinear cell changes (the warp's gradient jumps
    # there; larger Adam eps makes it worse, so it is the fit's own sensitivity).
    # A wrong row correspondence differs by ~1 A everywhere.
    diff = np.abs(b - a[perm])
    # (measured: max 0.007-0.031, 99th percentile <= 0.002, mean 3e-5 A)
    assert diff.max() < 0.1
    assert np.quantile(diff, 0.99) < 0.01
    assert diff.mean() < 1e-4


def test_subtomograms_without_weights_are_refused(one_mode, tmp_path):
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    sub = subtomograms_from_tilts(one_mode.particles.subset(np.arange(3)), tmp_path,
                                  progress=False)
    sub = replace(sub, weights=None, meta=dict(sub.meta, source="subtomos.star"))
    with pytest.raises(DataError, match="subtomos.star.*rlnCtfImage"):
        _fit(sub)

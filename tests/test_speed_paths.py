"""The compacted EM hot path (issue 14) equals the dense reference computation: projection
at the kept pixels, likelihoods, noise sums, back-projection (each pixel inserted once,
Friedel mates added at the end), and a whole ml2d fit with ``EMConfig.compact`` on/off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set

from tomohet.methods.em import EMConfig, EMEngine
from tomohet.methods.ml import ML2D
from tomohet.physics.compact import (
    CompactSums,
    accumulate_noise_compact,
    compact_batch,
    insert_compact,
    log_likelihoods_compact,
    project_compact,
    trilinear_corners,
)
from tomohet.physics.forward import log_likelihoods, model_transforms
from tomohet.physics.fourier import freq_grid_3d
from tomohet.physics.projection import Backprojector, VolumeProjector
from tomohet.physics.reconstruction import backproject

torch.set_num_threads(1)

BOX, K = 24, 3


@pytest.fixture(scope="module")
def tilt_set():
    particles, _, _ = make_tilt_set(n=10, box=BOX, n_tilts=7, snr=0.5, seed=3)
    particles.dose_e_per_A2 = particles.dose_e_per_A2 * 8  # later tilts lose pixels
    return particles


def _prep(particles, max_res):
    engine = EMEngine(particles, EMConfig(n_classes=K, max_resolution_A=max_res),
                      np.arange(particles.n_particles))
    prep = engine.prepare(np.arange(particles.n_particles))
    noise = engine.new_noise()
    g = torch.Generator().manual_seed(1)
    noise.sigma2 = torch.rand(noise.sigma2.shape, generator=g) + 0.5
    return engine, prep, noise


def _volumes():
    g = torch.Generator().manual_seed(2)
    return torch.randn(K, BOX, BOX, BOX, generator=g)


def test_trilinear_corners_interpolate_a_linear_function_exactly():
    """Independent check of the plan: trilinear weights reproduce a linear function of
    the grid coordinates; corners off the grid carry zero weight."""
    p = 10
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(500, 3, generator=g) * (p + 1) - 1  # some off the grid
    flat, cw = trilinear_corners(pts, p)
    assert flat.shape == cw.shape == (500, 8)
    x, y, z = flat % p, (flat // p) % p, flat // (p * p)
    f = (1.0 * x + 2.0 * y - 3.0 * z).float()
    inside = ((pts >= 0) & (pts <= p - 1)).all(1)
    val = (f * cw).sum(1)
    expect = pts[:, 0] + 2 * pts[:, 1] - 3 * pts[:, 2]
    torch.testing.assert_close(val[inside], expect[inside], atol=1e-4, rtol=1e-5)
    assert torch.allclose(cw.sum(1)[inside], torch.ones(int(inside.sum())))
    assert (cw >= 0).all() and (cw.sum(1) <= 1 + 1e-6).all()


@pytest.mark.parametrize("max_res", [None, 30.0])
def test_compact_projection_likelihood_and_noise_equal_dense(tilt_set, max_res):
    engine, prep, noise = _prep(tilt_set, max_res)
    proj = VolumeProjector(_volumes(), pad=2)
    cb = compact_batch(prep, proj.padded, noise.sigma2.shape[0])
    assert cb.data.numel() < prep.mask.numel()  # something was left out
    assert cb.data.numel() == int(prep.mask.sum())  # every masked pixel, once
    dense = model_transforms(proj, prep)  # (K, B, T, D, Dh)
    b, t = prep.mask.shape[:2]
    at_kept = dense.reshape(K, b * t, -1)[:, cb.image, cb.pixel]
    comp = project_compact(proj, cb)
    scale = at_kept.abs().max()
    torch.testing.assert_close(comp, at_kept, atol=1e-5 * scale, rtol=1e-4)
    # likelihoods, per particle and per tilt
    torch.testing.assert_close(log_likelihoods_compact(cb, comp, noise),
                               log_likelihoods(prep, dense, noise), rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(log_likelihoods_compact(cb, comp, noise, per_tilt=True),
                               log_likelihoods(prep, dense, noise, per_tilt=True),
                               rtol=1e-4, atol=1e-2)
    # noise sums from the residual against class 1
    ref, new = engine.new_noise(), engine.new_noise()
    resid = prep.data - prep.transfer * dense[1]
    ref.accumulate(resid.real**2 + resid.imag**2, prep)
    r_c = cb.data - cb.transfer * comp[1]
    accumulate_noise_compact(new, cb, r_c.real**2 + r_c.imag**2)
    torch.testing.assert_close(new._count, ref._count)
    torch.testing.assert_close(new._sum, ref._sum, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("max_res", [None, 30.0])
@pytest.mark.parametrize("with_noise", [False, True])
def test_compact_backprojection_equals_dense(tilt_set, max_res, with_noise):
    """Every kept pixel once + Friedel mates at the end == dense insertion with mates,
    for soft, sparse class weights over 2K volumes."""
    _, prep, noise = _prep(tilt_set, max_res)
    noise = noise if with_noise else None
    b = prep.mask.shape[0]
    g = torch.Generator().manual_seed(4)
    vw = torch.rand(2 * K, b, generator=g) * (torch.rand(2 * K, b, generator=g) > 0.5)
    dense = Backprojector(BOX, 2 * K)
    backproject(dense, prep, vw, noise)
    sums = CompactSums(BOX, 2 * K)
    cb = compact_batch(prep, sums.padded, 12)
    insert_compact(sums, cb, vw, noise)
    comp = sums.backprojector()
    p = comp.padded
    # the mirror of the first plane (frequency -P/2) is off the grid: compare the rest
    for a, c in zip(dense.grids(), comp.grids(), strict=True):
        a, c = a[:, 1:, 1:, 1:], c[:, 1:, 1:, 1:]
        torch.testing.assert_close(c, a, atol=1e-5 * a.abs().max(), rtol=1e-4)
    assert comp.data.shape == (2 * K, p**3)


def test_ml2d_posteriors_equal_with_compaction_on_and_off(monkeypatch):
    particles, _, _ = make_tilt_set(n=32, box=BOX, n_tilts=5, snr=0.3, seed=11)
    params = dict(n_classes=2, n_iter=4, anneal_iters=2, min_iter=4, progress=False,
                  random_state=5)
    fast = ML2D(**params).fit(particles)
    original = ML2D._config

    def dense_config(self, device):
        cfg = original(self, device)
        cfg.compact = False
        return cfg

    monkeypatch.setattr(ML2D, "_config", dense_config)
    ref = ML2D(**params).fit(particles)
    np.testing.assert_array_equal(fast.predict(), ref.predict())
    np.testing.assert_allclose(fast.predict_proba(), ref.predict_proba(), atol=2e-3)


def test_current_shell_from_class_fscs():
    particles, _, _ = make_tilt_set(n=4, box=BOX, n_tilts=3, snr=0.5, seed=1)
    engine = EMEngine(particles, EMConfig(n_classes=2, current_size_margin=3), np.arange(4))
    a = [1.0] * 5 + [0.1] * 8  # drops below 0.143 at shell 5
    b = [1.0] * 7 + [0.0] * 6  # at shell 7: the better class decides
    assert engine.current_shell([a, b]) == 7 + 3
    assert engine.current_shell([]) is None  # no FSC yet: every pixel
    assert engine.current_shell([[1.0] * 13]) is None  # past Nyquist: no limit
    engine.cfg.current_size_margin = None
    assert engine.current_shell([a, b]) is None


@pytest.mark.parametrize("compact", [True, False])
def test_em_pass_with_current_size_leaves_out_high_frequencies(compact):
    """A pass limited to shell L back-projects nothing past L (plus the trilinear
    spread), and compact and dense passes agree under the limit."""
    from tomohet.methods.em import EMState

    particles, labels, vols = make_tilt_set(n=16, box=BOX, n_tilts=5, snr=0.5, seed=2)
    n = particles.n_particles
    limit = 6
    fsc = [[1.0] * (limit - 2) + [0.0] * (BOX // 2 + 3 - limit)] * 2  # drop at L - 2
    state = EMState(volumes=vols, priors=torch.full((2,), 0.5),
                    sigma2=torch.ones(12, BOX // 2 + 2), posteriors=np.full((n, 2), 0.5),
                    fsc=fsc)
    halves = np.arange(n) % 2
    out = {}
    for path in (compact, not compact):
        engine = EMEngine(particles, EMConfig(n_classes=2, current_size_margin=2,
                                              compact=path), np.arange(n))
        assert engine.current_shell(fsc) == limit
        bp, _, post, _ = engine.em_pass(state, halves)
        out[path] = post
        p = bp.padded
        c = torch.arange(p) - p // 2
        r = (c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).sqrt()
        w = bp.grids()[1]
        assert w[:, r > (limit + 0.5) * bp.pad + 2].abs().max() == 0
        assert w[:, r < limit * bp.pad].abs().max() > 0
    np.testing.assert_allclose(out[True], out[False], atol=1e-4)


def test_focused_pass_subtracts_the_consensus_alike_on_both_paths():
    """A focused pass (the whole consensus subtracted, as region splits run): the compact
    path subtracts the consensus's projection at its kept pixels only, and gives the
    dense path's posteriors, log evidence and back-projection."""
    from tomohet.methods.em import EMState

    particles, _, vols = make_tilt_set(n=16, box=BOX, n_tilts=5, snr=0.5, seed=4)
    n = particles.n_particles
    g = np.indices((BOX, BOX, BOX)) - BOX // 2
    focus = torch.as_tensor(((g[0] - 3) ** 2 + g[1] ** 2 + (g[2] + 2) ** 2 <= 25)
                            .astype(np.float32))
    consensus = vols.mean(0)
    state = EMState(volumes=vols - consensus, priors=torch.full((2,), 0.5),
                    sigma2=torch.ones(12, BOX // 2 + 2), posteriors=np.full((n, 2), 0.5),
                    fsc=[])
    halves = np.arange(n) % 2
    out = {}
    for path in (True, False):
        engine = EMEngine(particles, EMConfig(n_classes=2, compact=path), np.arange(n),
                          focus_mask=focus, consensus=consensus, subtract_all=True)
        bp, noise, post, ll = engine.em_pass(state, halves)
        out[path] = post, ll, bp.grids()[1], noise.sigma2
    (pc, llc, wc, sc), (pd, lld, wd, sd) = out[True], out[False]
    assert 0.05 < float(pc[:, 0].mean()) < 0.95 and np.abs(pc - 0.5).max() > 0.1
    np.testing.assert_allclose(pc, pd, atol=1e-4)
    assert llc == pytest.approx(lld, rel=1e-4)
    torch.testing.assert_close(sc, sd, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(wc[:, 1:, 1:, 1:], wd[:, 1:, 1:, 1:],
                               atol=1e-5 * wd.abs().max(), rtol=1e-4)


@pytest.mark.parametrize("box,pad", [(25, 1), (25, 2), (24, 1)])
def test_compact_projection_at_grid_edges(box, pad):
    """Odd boxes and pad 1 put stencils on the padded grid's first and last planes."""
    particles, _, _ = make_tilt_set(n=4, box=box, n_tilts=3, snr=0.5, seed=5)
    engine = EMEngine(particles, EMConfig(n_classes=2, pad=pad), np.arange(4))
    prep = engine.prepare(np.arange(4))
    g = torch.Generator().manual_seed(6)
    proj = VolumeProjector(torch.randn(2, box, box, box, generator=g), pad=pad)
    cb = compact_batch(prep, proj.padded, 11)
    dense = model_transforms(proj, prep).reshape(2, 12, -1)[:, cb.image, cb.pixel]
    comp = project_compact(proj, cb)
    torch.testing.assert_close(comp, dense, atol=1e-5 * dense.abs().max(), rtol=1e-4)


@pytest.mark.parametrize("compact", [True, False])
def test_passes_allocate_only_the_accumulator_their_path_fills(monkeypatch, compact):
    """The compact path fills CompactSums only: no dense Backprojector is allocated next
    to it (2K padded grids, ~84 MB at K=4 box 48); the dense path allocates one per pass."""
    import tomohet.methods.em as em

    particles, _, vols = make_tilt_set(n=6, box=BOX, n_tilts=3, snr=0.5, seed=4)
    n = particles.n_particles
    made = []

    class Counted(Backprojector):
        def __post_init__(self) -> None:
            made.append(self.n_volumes)
            super().__post_init__()

    monkeypatch.setattr(em, "Backprojector", Counted)
    engine = EMEngine(particles, EMConfig(n_classes=2, compact=compact), np.arange(n))
    state = em.EMState(volumes=vols, priors=torch.full((2,), 0.5),
                       sigma2=torch.ones(12, BOX // 2 + 2), posteriors=np.full((n, 2), 0.5))
    halves = np.arange(n) % 2
    bp, _, _, _ = engine.em_pass(state, halves)
    bp2 = engine.reconstruct_pass(np.full((n, 2), 0.5), None, halves)
    assert made == ([] if compact else [4, 4])
    assert bp.data.shape == bp2.data.shape == (4, (BOX * 2) ** 3)


@pytest.fixture(scope="module")
def subtomo_set():
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    particles, _, _ = make_tilt_set(n=6, box=BOX, n_tilts=7, snr=0.5, seed=8)
    return subtomograms_from_tilts(particles, progress=False)


@pytest.mark.parametrize("max_res", [None, 30.0])
def test_compact_subtomograms_equal_dense(subtomo_set, max_res):
    """Subtomograms on the compact path (one "image" of 3D rfft voxels each): projection
    at the kept voxels, likelihoods, noise sums and back-projection equal the dense
    computation (rotated 3D grid sampled, every voxel and its mate inserted)."""
    n = subtomo_set.n_particles
    engine = EMEngine(subtomo_set, EMConfig(n_classes=K, max_resolution_A=max_res),
                      np.arange(n))
    prep = engine.prepare(np.arange(n))
    # voxels at |k| = 1/2 exactly ((4, 8, 8) / 24): whether one is projected and inserted
    # depends on the rounding of its rotated norm, which differs between the two paths
    radius = freq_grid_3d(BOX).norm(dim=-1)
    prep.mask &= (radius - 0.5).abs() > 1e-4
    noise = engine.new_noise()
    g = torch.Generator().manual_seed(7)
    noise.sigma2 = torch.rand(noise.sigma2.shape, generator=g) + 0.5
    proj = VolumeProjector(_volumes(), pad=2)
    cb = compact_batch(prep, proj.padded, noise.sigma2.shape[0])
    assert cb.n_tilts == 1 and 0 < cb.data.numel() < prep.mask.numel()
    dense = model_transforms(proj, prep)  # (K, B, D, D, Dh)
    at_kept = dense.reshape(K, n, -1)[:, cb.image, cb.pixel]
    comp = project_compact(proj, cb)
    torch.testing.assert_close(comp, at_kept, atol=1e-5 * at_kept.abs().max(), rtol=1e-4)
    ll_dense = log_likelihoods(prep, dense, noise)
    torch.testing.assert_close(log_likelihoods_compact(cb, comp, noise), ll_dense,
                               rtol=1e-4, atol=1e-3 * ll_dense.abs().max())
    ref, new = engine.new_noise(), engine.new_noise()
    resid = prep.data - prep.transfer * dense[2]
    ref.accumulate(resid.real**2 + resid.imag**2, prep)
    r_c = cb.data - cb.transfer * comp[2]
    accumulate_noise_compact(new, cb, r_c.real**2 + r_c.imag**2)
    torch.testing.assert_close(new._count, ref._count)
    torch.testing.assert_close(new._sum, ref._sum, rtol=1e-4, atol=1e-4 * ref._sum.max())
    vw = torch.rand(2 * K, n, generator=g) * (torch.rand(2 * K, n, generator=g) > 0.4)
    bp = Backprojector(BOX, 2 * K)
    backproject(bp, prep, vw, noise)
    sums = CompactSums(BOX, 2 * K)
    insert_compact(sums, cb, vw, noise, chunk=1000)  # several chunks
    for a, c in zip(bp.grids(), sums.backprojector().grids(), strict=True):
        a, c = a[:, 1:, 1:, 1:], c[:, 1:, 1:, 1:]
        torch.testing.assert_close(c, a, atol=1e-5 * a.abs().max(), rtol=1e-4)


def test_ml3d_posteriors_equal_with_compaction_on_and_off(subtomo_set, monkeypatch):
    from tomohet.methods.ml import ML3D

    params = dict(n_classes=2, n_iter=3, anneal_iters=1, min_iter=3, n_restarts=1,
                  progress=False, random_state=2)
    fast = ML3D(**params).fit(subtomo_set)
    original = ML3D._config

    def dense_config(self, device):
        cfg = original(self, device)
        cfg.compact = False
        return cfg

    monkeypatch.setattr(ML3D, "_config", dense_config)
    ref = ML3D(**params).fit(subtomo_set)
    np.testing.assert_array_equal(fast.predict(), ref.predict())
    np.testing.assert_allclose(fast.predict_proba(), ref.predict_proba(), atol=2e-3)


@pytest.mark.parametrize("fraction", [1e-6, 0.5, 2.0])  # none, some, all batches cached
def test_geometry_cache_gives_identical_passes(fraction):
    """Passes with the geometry cache (any budget) equal passes without it, bit for bit:
    a reconstruction, a pass over every pixel and one under a current-size limit."""
    from tomohet.methods.em import EMState

    particles, _, vols = make_tilt_set(n=20, box=BOX, n_tilts=5, snr=0.5, seed=9)
    n = particles.n_particles
    halves = np.arange(n) % 2
    g = np.random.default_rng(3)
    weights = g.dirichlet(np.ones(2), n)
    fsc = [[1.0] * 6 + [0.0] * (BOX // 2 - 4)] * 2  # limit: shell 6 + margin 2
    probe = EMEngine(particles, EMConfig(n_classes=2, batch_size=4, cache_geometry_mb=1e3),
                     np.arange(n))
    probe.reconstruct_pass(weights, None, halves)  # fills the cache: every batch
    n_batches = len(probe.batches())
    assert probe.geometry is not None and len(probe.geometry) == n_batches
    out = []
    for mb in (0.0, fraction * probe.geometry.used / 2**20):
        engine = EMEngine(particles, EMConfig(n_classes=2, batch_size=4, current_size_margin=2,
                                              cache_geometry_mb=mb), np.arange(n))
        bp0 = engine.reconstruct_pass(weights, None, halves)
        noise = engine.noise_pass(vols[:1], np.zeros(n, dtype=np.int64))
        state = EMState(volumes=vols, priors=torch.full((2,), 0.5), sigma2=noise.sigma2,
                        posteriors=weights)
        runs = [engine.em_pass(state, halves)]
        state.fsc = fsc
        runs.append(engine.em_pass(state, halves))
        runs.append(engine.em_pass(state, halves))  # from the cache where it holds it
        out.append((bp0, runs, engine.geometry))
    (bp_ref, ref, none), (bp_c, cached, cache) = out
    assert none is None and cache is not None
    expect = {1e-6: (0, 0), 0.5: (1, n_batches - 1), 2.0: (n_batches, n_batches)}[fraction]
    assert expect[0] <= len(cache) <= expect[1]
    assert torch.equal(bp_c.data, bp_ref.data) and torch.equal(bp_c.weight, bp_ref.weight)
    for (b1, n1, p1, l1), (b2, n2, p2, l2) in zip(ref, cached, strict=True):
        assert torch.equal(b1.data, b2.data) and torch.equal(b1.weight, b2.weight)
        assert torch.equal(n1.sigma2, n2.sigma2)
        np.testing.assert_array_equal(p1, p2)
        assert l1 == l2


def test_ml2d_with_geometry_cache_equals_without():
    """``cache_geometry_mb`` on the method (``classify --cache-geometry MB``) reaches the
    EM engine and changes nothing in the result."""
    import tomohet.methods.em as em

    particles, _, _ = make_tilt_set(n=24, box=BOX, n_tilts=5, snr=0.3, seed=12)
    params = dict(n_classes=2, n_iter=3, anneal_iters=1, min_iter=3, progress=False,
                  random_state=4)
    ref = ML2D(**params).fit(particles)
    cached = ML2D(**params)
    cached.cache_geometry_mb = 50.0
    engines = []
    original = em.EMEngine.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        engines.append(self)

    em.EMEngine.__init__ = spy  # type: ignore[method-assign]
    try:
        cached.fit(particles)
    finally:
        em.EMEngine.__init__ = original  # type: ignore[method-assign]
    assert any(e.geometry is not None and len(e.geometry) > 0 for e in engines)
    np.testing.assert_array_equal(cached.predict_proba(), ref.predict_proba())

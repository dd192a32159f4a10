"""SHC on the compacted passes (issue 14): scores and sums equal the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import make_tilt_set, two_state_volumes

from tomohet.data.keys import half_sets
from tomohet.methods.em import EMConfig, EMEngine
from tomohet.methods.shc import SHC
from tomohet.methods.shc_pass import batch_scores, climb_pass
from tomohet.methods.shc_scoring import climb_step, ncc_scores, ncc_scores_compact, pixel_weights
from tomohet.physics.compact import CompactProjector, compact_batch, project_compact
from tomohet.physics.forward import model_transforms
from tomohet.physics.fourier import freq_grid_3d, radial_shell_index
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)

BOX, K = 20, 3
TRUE = two_state_volumes(BOX)  # what make_tilt_set simulates


@pytest.fixture(scope="module")
def tilt_set():
    particles, _, _ = make_tilt_set(n=8, box=BOX, n_tilts=7, snr=0.5, seed=5)
    particles.dose_e_per_A2 = particles.dose_e_per_A2 * 8  # later tilts lose pixels
    return particles


@pytest.fixture(scope="module")
def subtomo_set():
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    particles, _, _ = make_tilt_set(n=6, box=BOX, n_tilts=7, snr=0.5, seed=6)
    return subtomograms_from_tilts(particles, progress=False)


def _volumes(seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, BOX, BOX, BOX, generator=g)


def _band(ndim: int, lo: int, hi: int) -> torch.Tensor:
    shell = radial_shell_index(BOX, ndim)
    return (shell >= lo) & (shell <= hi)


def _prepared(particles, kind: str):
    """Every particle of the set prepared by an EM engine; for subtomograms without the
    voxels at |k| = 1/2 exactly (whether they are projected depends on the rounding of
    their rotated norm, which differs between the dense and compact paths)."""
    n = particles.n_particles
    prep = EMEngine(particles, EMConfig(n_classes=K), np.arange(n)).prepare(np.arange(n))
    if kind == "subtomo":
        prep.mask &= (freq_grid_3d(BOX).norm(dim=-1) - 0.5).abs() > 1e-4
    return prep


@pytest.mark.parametrize("kind", ["tilt", "subtomo"])
@pytest.mark.parametrize("shells", [(1, BOX // 2), (2, 6)])  # the whole band, a narrow one
def test_compact_ncc_equals_dense(kind, shells, tilt_set, subtomo_set):
    """NCC of every particle with every reference on the kept pixels (one trilinear plan
    for the K references) equals the dense ``ncc_scores`` over the full transforms."""
    prep = _prepared(tilt_set if kind == "tilt" else subtomo_set, kind)
    band = _band(2 if kind == "tilt" else 3, *shells)
    # the two simulated states, and one of them with noise: scores far from 0
    refs = torch.cat([TRUE, TRUE[:1] + 0.3 * _volumes()[:1]])
    proj = VolumeProjector(refs, pad=2)
    dense = ncc_scores(prep, model_transforms(proj, prep), band)  # (B, K)
    cb = compact_batch(prep, proj.padded, 1)
    assert 0 < cb.data.numel() < prep.mask.numel()
    comp = ncc_scores_compact(cb, project_compact(proj, cb),
                              pixel_weights(band).index_select(0, cb.pixel))
    assert dense.abs().min() > 0.05, dense
    torch.testing.assert_close(comp, dense, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["tilt", "subtomo"])
def test_distance_scores_are_minus_half_the_squared_distance(kind, tilt_set, subtomo_set):
    """distance=True (region splits): dense and compact scores both equal
    (|X|^2 - |X - HV|^2) / 2 over the scored pixels, computed directly from the
    residual, and the closest reference wins per particle."""
    from tomohet.physics.fourier import hermitian_weights_2d, hermitian_weights_3d

    prep = _prepared(tilt_set if kind == "tilt" else subtomo_set, kind)
    ndim = 2 if kind == "tilt" else 3
    band = _band(ndim, 1, 7)
    refs = torch.cat([TRUE, TRUE[:1] + 0.3 * _volumes()[:1]])
    proj = VolumeProjector(refs, pad=2)
    model = model_transforms(proj, prep)  # (K, B, ...)
    dense = ncc_scores(prep, model, band, distance=True)
    cb = compact_batch(prep, proj.padded, 1)
    comp = ncc_scores_compact(cb, project_compact(proj, cb),
                              pixel_weights(band).index_select(0, cb.pixel), distance=True)
    herm = (hermitian_weights_2d(BOX) if ndim == 2 else hermitian_weights_3d(BOX))
    w = (prep.mask & band).double() * herm.double()
    x = prep.data.to(torch.complex128)
    expect = torch.stack([0.5 * ((x.abs() ** 2 - (x - m.to(torch.complex128)
                                                  * prep.transfer).abs() ** 2) * w)
                          .flatten(1).sum(1) for m in model], dim=1)  # (B, K)
    torch.testing.assert_close(dense.double(), expect, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(comp.double(), expect, rtol=1e-4, atol=1e-3)
    assert expect.std() > 1.0  # not a trivial 0 == 0


def test_pixel_weights_are_hermitian_multiplicity_inside_the_band():
    band = _band(2, 2, 5)
    w = pixel_weights(band).reshape(band.shape)
    assert w[~band].abs().max() == 0
    # a full image's power: sum over the rfft half with these weights == full FFT sum
    g = torch.Generator().manual_seed(0)
    img = torch.randn(BOX, BOX, generator=g)
    full = torch.fft.fftshift(torch.fft.fft2(img), dim=0)
    half = torch.fft.fftshift(torch.fft.rfft2(img), dim=0)
    ones = pixel_weights(torch.ones_like(band)).reshape(band.shape)
    np.testing.assert_allclose(float((half.abs()**2 * ones).sum()),
                               float((full.abs()**2).sum()), rtol=1e-5)


def test_batch_scores_take_the_other_half_references(tilt_set):
    """Each particle is scored against the references of its side only."""
    n = tilt_set.n_particles
    engine = EMEngine(tilt_set, EMConfig(n_classes=K), np.arange(n))
    prep = engine.prepare(np.arange(n))
    a, b = VolumeProjector(_volumes(2)), VolumeProjector(_volumes(3))
    cb = compact_batch(prep, a.padded, 1)
    weight = pixel_weights(_band(2, 1, BOX // 2)).index_select(0, cb.pixel)
    side = torch.as_tensor(np.arange(n) % 2)
    got = batch_scores(cb, [CompactProjector(a), CompactProjector(b)], weight, side)
    for h, proj in ((0, a), (1, b)):
        ref = ncc_scores_compact(cb, project_compact(proj, cb), weight)
        torch.testing.assert_close(got[side == h], ref[side == h], rtol=1e-5, atol=1e-7)


def test_climb_pass_equals_dense_scores_climb_and_reconstruction(tilt_set):
    """One compact pass (score, climb, insert) gives the labels of the dense scoring pass
    followed by the climb, and the sums of a reconstruction pass with those labels."""
    n = tilt_set.n_particles
    engine = EMEngine(tilt_set, EMConfig(n_classes=K, batch_size=3), np.arange(n))
    halves = half_sets(tilt_set.names, tilt_set.tomo_names, 0)
    refs = torch.cat([_volumes(2), _volumes(3)])[[0, 3, 1, 4, 2, 5]]  # class c half h
    band = _band(2, 1, 7)
    model = SHC(n_classes=K, progress=False)
    dense = model._score_pass(engine, refs, band, halves)  # (N, K, 1), dense NCC
    g = np.random.default_rng(0)
    labels = g.integers(0, K, n)
    draws = (g.random((n, K)), g.random((n, K)))
    expect = climb_step(dense, labels, 5.0, draws)
    new, bp = climb_pass(engine, refs, band, halves, model._climber(labels, 5.0, draws))
    np.testing.assert_array_equal(new, expect)
    fresh = engine.reconstruct_pass(np.eye(K)[expect], None, halves)
    torch.testing.assert_close(bp.data, fresh.data)
    torch.testing.assert_close(bp.weight, fresh.weight)


@pytest.mark.parametrize("kind", ["tilt", "subtomo"])
def test_shc_fit_same_labels_compact_and_dense(kind):
    """A whole fit (annealed and plain climbing, half-set renaming, two runs) takes the
    same steps on both paths. Starting references are given: from a random partition the
    two halves' maps are nearly alike, and which half-1 class matches which half-0 class
    is then a near tie that float rounding may decide either way."""
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    particles, truth, vols = make_tilt_set(n=40, box=24, n_tilts=9, snr=0.05, seed=7)
    if kind == "subtomo":
        particles = subtomograms_from_tilts(particles, progress=False)
    params = dict(n_classes=2, n_iter=3, n_runs=2, anneal_iters=2, init="random",
                  references=[vols[0], vols[1]], focus_mask=None, random_state=3,
                  progress=False)
    fast = SHC(**params).fit(particles)
    ref = SHC(compact=False, **params).fit(particles)
    np.testing.assert_array_equal(fast.predict(), ref.predict())
    np.testing.assert_array_equal(fast.run_labels_, ref.run_labels_)
    for run_fast, run_ref in zip(fast.history_, ref.history_, strict=True):
        assert [(h["changed_fraction"], h["populations"]) for h in run_fast] == \
            [(h["changed_fraction"], h["populations"]) for h in run_ref]
    assert max(h["changed_fraction"] for h in fast.history_[0]) > 0  # labels did move
    assert adjusted_rand_score(truth, fast.predict()) > 0.2  # and found the states
    # the final maps: the compact and dense sums agree (tests/test_speed_paths.py) except
    # at the padded grid's outermost planes, which the Wiener filter's FSC feels a little
    np.testing.assert_allclose(fast.resolution_A_, ref.resolution_A_, rtol=1e-3)


def test_shc_with_geometry_cache_equals_without():
    """Compacted batches kept across iterations and runs (part of them, or all) give the
    same fit, bit for bit, as rebuilding them every pass."""
    particles, _, vols = make_tilt_set(n=24, box=16, n_tilts=7, snr=0.1, seed=9)
    params = dict(n_classes=2, n_iter=3, n_runs=2, anneal_iters=2, init="random",
                  focus_mask=None, references=[vols[0], vols[1]], random_state=1,
                  batch_size=8, progress=False)
    ref = SHC(**params).fit(particles)
    for budget, held in ((1.5, 2), (100.0, 3)):  # of the three batches (0.7 MB each)
        cached = SHC(cache_geometry_mb=budget, **params).fit(particles)
        assert len(cached.setup_.engine.geometry) == held
        np.testing.assert_array_equal(cached.run_labels_, ref.run_labels_)
        assert cached.history_ == ref.history_
        torch.testing.assert_close(cached.class_volumes_, ref.class_volumes_, rtol=0, atol=0)


def test_classify_shc_cache_geometry_flag_reaches_the_engine(tmp_path, monkeypatch):
    from tomohet.cli.main import main
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("demo", n_particles=24, n_tomograms=1, box=16, n_tilts=7)
    simulate(cfg, seed=2).write(tmp_path / "sim")
    seen = []
    fit = SHC.fit

    def recording_fit(self, particles):
        out = fit(self, particles)
        seen.append((self.cache_geometry_mb, len(self.setup_.plain.geometry)))
        return out

    monkeypatch.setattr(SHC, "fit", recording_fit)
    rc = main(["--threads", "1", "classify", "shc",
               str(tmp_path / "sim" / "particles_optimisation_set.star"), "--k", "2",
               "--out", str(tmp_path / "shc"), "--no-progress", "--iter", "2", "--runs", "1",
               "--init", "random", "--focus-mask", "none", "--cache-geometry", "50"])
    assert rc in (0, None)
    assert seen == [(50.0, 1)]  # 24 particles: one batch, kept


@pytest.mark.parametrize("focused", [False, True])
def test_half_map_fsc_is_the_engines_class_fsc(tilt_set, focused):
    """SHC's band resolution comes from the half maps it already has; the curves are
    those of EMEngine.volumes_from (gold-standard maps, under the focus mask)."""
    from tomohet.methods.shc_scoring import half_map_fsc
    from tomohet.physics.reconstruction import wiener_reconstruct

    n = tilt_set.n_particles
    focus = None
    if focused:
        c = torch.arange(BOX) - BOX // 2
        z, y, x = torch.meshgrid(c, c, c, indexing="ij")
        focus = ((x - 3)**2 + y**2 + z**2 < 25).float()  # a sphere off the centre
    engine = EMEngine(tilt_set, EMConfig(n_classes=2), np.arange(n), focus_mask=focus,
                      consensus=None if focus is None else TRUE[0])
    halves = half_sets(tilt_set.names, tilt_set.tomo_names, 0)
    bp = engine.reconstruct_pass(np.eye(2)[np.arange(n) % 2], None, halves)
    _, curves, _ = engine.volumes_from(bp)
    got = half_map_fsc(wiener_reconstruct(bp), engine.focus_mask)
    np.testing.assert_array_equal(got.numpy(), np.asarray(curves, dtype=np.float32))
    if focused:  # the mask matters
        plain = half_map_fsc(wiener_reconstruct(bp))
        assert not torch.allclose(plain, got)

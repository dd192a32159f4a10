"""The likelihood's dispersion (tomohet.methods.dispersion): calibrated on independent
white noise, exactly twice that when every tilt image is counted twice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set

from tomohet.methods.dispersion import (
    MIN_DISPERSION,
    applied_dispersion,
    calibrate_noise,
    estimate_dispersion,
    smooth_fields,
)
from tomohet.methods.em import EMConfig, EMEngine
from tomohet.physics.forward import log_likelihoods, mahalanobis2, model_transforms


def _twice(p):
    """The same particles with every tilt image listed twice (same pixels, same noise)."""
    def cat(a):
        return np.concatenate([a, a], axis=1)
    return dataclasses.replace(
        p, tilt_rotation=cat(p.tilt_rotation), tilt_deg=cat(p.tilt_deg),
        dose_e_per_A2=cat(p.dose_e_per_A2), defocus_u_A=cat(p.defocus_u_A),
        defocus_v_A=cat(p.defocus_v_A), defocus_angle_deg=cat(p.defocus_angle_deg),
        ctf_scale=cat(p.ctf_scale), shift_A=cat(p.shift_A), visible=cat(p.visible),
        image_index=cat(p.image_index))


@pytest.fixture(scope="module")
def tilt_set():
    particles, _, vols = make_tilt_set(n=160, box=16, n_tilts=11, snr=0.1, seed=2,
                                       labels=np.zeros(160, dtype=np.int64))
    return particles, vols[0]  # one state: the residuals are the noise alone


def _measure(particles, consensus, seed=0):
    n = particles.n_particles
    engine = EMEngine(particles, EMConfig(n_classes=1, batch_size=40), np.arange(n))
    noise = engine.noise_pass(consensus[None], np.zeros(n, dtype=np.int64))
    return engine, noise, estimate_dispersion(engine, consensus, noise, seed=seed)


def test_mahalanobis2_is_the_variance_scale_of_the_log_likelihood_ratio(tilt_set):
    """``d'^2`` against a direct sum: twice the mean log-likelihood ratio of two maps on
    noise-free data drawn from the first (``ll(v1) - ll(v0)`` at ``x = H v1``)."""
    particles, consensus = tilt_set
    engine = EMEngine(particles, EMConfig(n_classes=2, batch_size=40),
                      np.arange(particles.n_particles))
    noise = engine.noise_pass(consensus[None], np.zeros(particles.n_particles, np.int64))
    v1 = consensus + 0.2 * smooth_fields(torch.ones_like(consensus), 1, 3.0, 1)[0]
    proj = engine.projector(torch.stack([consensus, v1]))
    prep = engine.prepare(np.arange(20))
    slices = model_transforms(proj, prep)
    prep.data = slices[1] * prep.transfer  # noise-free data from v1
    ll = log_likelihoods(prep, slices, noise).double()
    d2 = mahalanobis2(prep, (slices[1] - slices[0])[None], noise)[:, 0].double()
    torch.testing.assert_close(2 * (ll[:, 1] - ll[:, 0]), d2, rtol=1e-4, atol=1e-6)


def test_independent_white_noise_is_calibrated_and_counting_it_twice_doubles_it(tilt_set):
    """White noise, one sample per pixel: the random fields' log-likelihood ratios have
    the variance ``d'^2`` (dispersion 1 within its sampling error, ~0.06 here). The
    same images listed twice are counted twice: exactly 2x (same noise estimate, twice
    the ratio, twice ``d'^2``)."""
    particles, consensus = tilt_set
    _, _, once = _measure(particles, consensus)
    _, _, twice = _measure(_twice(particles), consensus)
    assert 0.8 < once < 1.2
    assert twice / once == pytest.approx(2.0, rel=1e-3)
    assert applied_dispersion(once) == 1.0 if once <= MIN_DISPERSION else True
    assert applied_dispersion(twice) == pytest.approx(twice)


def test_calibrate_noise_sets_the_factor_on_the_config_and_every_new_noise_model(tilt_set):
    particles, consensus = tilt_set
    engine, noise, twice = _measure(_twice(particles), consensus)
    before, known = noise.sigma2.clone(), noise.estimated.clone()
    out = calibrate_noise(engine, consensus, noise, seed=0)
    assert engine.cfg.noise_dispersion == pytest.approx(twice)
    torch.testing.assert_close(out.sigma2, before * twice)
    assert out.dispersion == pytest.approx(twice) and torch.equal(out.estimated, known)
    again = engine.noise_pass(consensus[None], np.zeros(particles.n_particles, np.int64))
    torch.testing.assert_close(again.sigma2, before * twice, rtol=1e-4, atol=0)
    # calibrated data: left alone
    engine1, noise1, _ = _measure(particles, consensus)
    s1 = noise1.sigma2.clone()
    calibrate_noise(engine1, consensus, noise1, seed=0)
    assert engine1.cfg.noise_dispersion == 1.0
    torch.testing.assert_close(noise1.sigma2, s1)


def test_smooth_fields_are_seeded_unit_rms_and_inside_the_support():
    sup = torch.zeros(12, 12, 12)
    sup[3:9, 3:9, 3:9] = 1
    a = smooth_fields(sup, 3, 3.0, 5, window_px=2.0)
    b = smooth_fields(sup, 3, 3.0, 5, window_px=2.0)
    torch.testing.assert_close(a, b)
    assert torch.all(a[:, sup == 0] == 0)
    torch.testing.assert_close(a.pow(2).mean((1, 2, 3)), torch.ones(3))
    assert not torch.allclose(a, smooth_fields(sup, 3, 3.0, 6, window_px=2.0))


def test_a_subset_of_the_particles_in_the_keyed_order_gives_a_close_estimate(tilt_set):
    """``max_particles`` takes whole batches from the start of the name-keyed order: the
    estimate on 80 of 160 particles is within sampling error of all, and the same for
    the same particles in another row order."""
    particles, consensus = tilt_set
    engine, noise, full = _measure(particles, consensus)
    part = estimate_dispersion(engine, consensus, noise, seed=0, max_particles=80)
    assert part != full and abs(part - full) < 0.25
    rev = np.arange(particles.n_particles)[::-1].copy()
    flipped = EMEngine(particles, EMConfig(n_classes=1, batch_size=40), rev)
    noise2 = flipped.noise_pass(consensus[None], np.zeros(len(rev), dtype=np.int64))
    again = estimate_dispersion(flipped, consensus, noise2, seed=0, max_particles=80)
    assert again == pytest.approx(part, rel=1e-4)

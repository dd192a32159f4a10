"""The subtomograms' noise profile (tomohet.methods.noise_profile): a per-voxel noise power
that is not white within shells is recovered per tomogram, white noise is left alone, the
profile reaches every likelihood through ``premult_power``, and classifying with it beats
classifying without it on such data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tomohet.data.particles import NoiseProfile, Optics, SubtomogramParticles
from tomohet.data.prepare import prepare_subtomo_batch
from tomohet.data.sources import ArrayVolumeSource
from tomohet.methods.em import EMConfig, EMEngine
from tomohet.methods.noise_profile import (
    MIN_SPREAD,
    estimate_noise_profile,
    with_noise_profile,
)
from tomohet.physics.forward import log_likelihoods, model_transforms
from tomohet.physics.fourier import (
    freq_grid_3d,
    ft_to_volume,
    radial_shell_index,
    volume_to_ft,
)
from tomohet.physics.geometry import random_rotations

D = 16


def _pattern(axis: int, strength: float) -> torch.Tensor:
    """A direction-dependent relative noise power (D, D, D//2+1): low along ``axis``."""
    k = freq_grid_3d(D)
    r = k.norm(dim=-1).clamp_min(1e-6)
    return (1.0 + strength * (1.0 - (k[..., axis] / r) ** 2)).float()


def _blob(seed: int, centre: tuple[float, float, float], sd: float = 2.5) -> torch.Tensor:
    c = torch.arange(D, dtype=torch.float32) - D / 2
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
    z0, y0, x0 = centre
    return torch.exp(-((zz - z0) ** 2 + (yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sd**2))


def _make_set(n: int, patterns: dict[str, torch.Tensor], maps: torch.Tensor,
              labels: np.ndarray, noise_sd: float, seed: int) -> SubtomogramParticles:
    """Subtomograms ``T * map + noise`` with noise power ``patterns[tomogram]`` per voxel
    (not premultiplied; T a smooth positive 3D CTF), made with the engine's own model."""
    gen = torch.Generator().manual_seed(seed)
    tomos = list(patterns)
    tomo_names = [tomos[i % len(tomos)] for i in range(n)]
    rot = random_rotations(n, gen, torch.float64).numpy()
    k = freq_grid_3d(D).norm(dim=-1)
    transfer = (0.4 + 0.6 * torch.cos(6.0 * k) ** 2).float()
    zeros = np.zeros((n, D, D, D), dtype=np.float32)
    weights = np.broadcast_to(transfer.numpy(), (n, *transfer.shape)).copy()
    blank = SubtomogramParticles(
        names=[f"p{i}" for i in range(n)], tomo_names=tomo_names,
        position_A=np.zeros((n, 3)), rotation=rot, volumes=ArrayVolumeSource(zeros),
        weights=ArrayVolumeSource(weights), optics=Optics(10.0, D, ctf_premultiplied=False),
        weight_layout="rfft")
    engine = EMEngine(blank, EMConfig(n_classes=len(maps), batch_size=64, compact=False),
                      np.arange(n))
    prep = engine.prepare(np.arange(n))
    model = model_transforms(engine.projector(maps), prep)  # (K, N, D, D, Dh)
    signal = model[torch.as_tensor(labels), torch.arange(n)] * prep.transfer
    # white noise in real space (so its transform is Hermitian), coloured per voxel
    sd = torch.stack([patterns[t] for t in tomo_names]).sqrt() * noise_sd
    noise = volume_to_ft(torch.randn((n, D, D, D), generator=gen)) * sd
    vols = ft_to_volume(signal + noise, box=D).numpy().astype(np.float32)
    return dataclasses.replace(blank, volumes=ArrayVolumeSource(vols))


def _relative(p: torch.Tensor, count_like: torch.Tensor) -> torch.Tensor:
    """``p`` divided by its mean per shell over the voxels that count."""
    shell = radial_shell_index(D, 3)
    out = torch.ones_like(p)
    for s in range(1, D // 2 + 1):
        sel = (shell == s) & count_like
        out[sel] = p[sel] / p[sel].mean()
    return out


@pytest.fixture(scope="module")
def two_tomograms():
    maps = (_blob(0, (0, 0, 0), 4.0) * 5)[None]
    patterns = {"ts1": _pattern(0, 3.0), "ts2": _pattern(2, 3.0)}
    n = 1200
    parts = _make_set(n, patterns, maps, np.zeros(n, dtype=np.int64), 20.0, seed=1)
    return parts, maps[0], patterns


def test_a_direction_dependent_noise_power_is_recovered_per_tomogram(two_tomograms):
    """Two tilt series with their noise low along different axes (x, z; up to 4x within
    a shell): each tomogram's estimate matches its own pattern (shell means 1) to within
    the sampling error of 600 particles and the shrinkage towards the pooled
    estimate, and not the other one's."""
    parts, consensus, patterns = two_tomograms
    engine = EMEngine(parts, EMConfig(n_classes=1, batch_size=200), np.arange(len(parts)))
    profile, info = estimate_noise_profile(engine, consensus)
    assert profile.tomograms == ["ts1", "ts2"]
    assert info["spread"] > MIN_SPREAD
    shell = radial_shell_index(D, 3)
    inside = (shell >= 1) & (shell <= D // 2 - 1)
    for g, t in enumerate(profile.tomograms):
        truth = _relative(patterns[t], inside)
        other = _relative(patterns["ts2" if t == "ts1" else "ts1"], inside)
        est = profile.power[g]
        err = float(((est - truth)[inside] / truth[inside]).abs().median())
        err_other = float(((est - other)[inside] / other[inside]).abs().median())
        assert err < 0.12, (t, err)
        assert err_other > 3 * err, (t, err, err_other)
        for s in range(1, D // 2):
            sel = (shell == s) & inside
            assert float(est[sel].mean()) == pytest.approx(1.0, abs=0.05)


def test_white_noise_is_left_white_and_tilt_images_are_not_touched(two_tomograms, sim):
    parts, consensus, _ = two_tomograms
    flat = {"ts1": torch.ones(D, D, D // 2 + 1), "ts2": torch.ones(D, D, D // 2 + 1)}
    white = _make_set(400, flat, consensus[None], np.zeros(400, dtype=np.int64), 20.0, 2)
    engine = EMEngine(white, EMConfig(n_classes=1, batch_size=64), np.arange(400))
    noise = engine.noise_pass(consensus[None], np.zeros(400, dtype=np.int64))
    same, info = with_noise_profile(engine, consensus, noise)
    assert info is not None and not info["applied"] and info["spread"] <= MIN_SPREAD
    assert same is noise and engine.particles is white
    tilt = EMEngine(sim, EMConfig(n_classes=1), np.arange(sim.n_particles))
    assert with_noise_profile(tilt, consensus, noise) == (noise, None)


def test_the_profile_multiplies_the_noise_power_of_every_prepared_batch(subtomos):
    """``premult_power`` = the format's factor x the particle's tomogram's profile; a
    tomogram the profile does not list stays white."""
    d = subtomos.optics.box
    prof = torch.rand((1, d, d, d // 2 + 1), generator=torch.Generator().manual_seed(3)) + 0.5
    with_p = dataclasses.replace(subtomos, noise_profile=NoiseProfile(["2"], prof))
    idx = np.arange(subtomos.n_particles)
    base = prepare_subtomo_batch(subtomos.batch(idx), subtomos.optics)
    got = prepare_subtomo_batch(with_p.batch(idx), subtomos.optics)
    for i, t in enumerate(subtomos.tomo_names):
        want = base.premult_power[i] * (prof[0] if t == "2" else 1.0)
        torch.testing.assert_close(got.premult_power[i], want)


def test_classifying_with_the_profile_beats_classifying_without_it():
    """Two states differing by a small blob, noise 11x stronger off one axis than along
    it: the Bayes classifier with the true maps and the estimated profile is right more
    often than with white noise per shell (the estimate uses no labels)."""
    maps = torch.stack([_blob(0, (0, 0, 0), 4.0) * 5,
                        _blob(0, (0, 0, 0), 4.0) * 5 + 0.6 * _blob(1, (3, 2, 0), 1.5)])
    n = 900
    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    pattern = _pattern(1, 10.0)
    parts = _make_set(n, {"ts": pattern}, maps, labels, 0.6, seed=4)
    acc = {}
    for name in ("white", "profile"):
        engine = EMEngine(parts, EMConfig(n_classes=2, batch_size=100), np.arange(n))
        cons = maps.mean(0)
        noise = engine.noise_pass(cons[None], np.zeros(n, dtype=np.int64))
        if name == "profile":
            noise, info = with_noise_profile(engine, cons, noise)
            assert info is not None and info["applied"]
        prep = engine.prepare(np.arange(n))
        ll = log_likelihoods(prep, model_transforms(engine.projector(maps), prep), noise)
        acc[name] = float((ll.argmax(1).numpy() == labels).mean())
    assert acc["profile"] > acc["white"] + 0.03, acc  # measured 0.713 -> 0.783


def test_many_tomograms_share_one_pooled_profile(two_tomograms, monkeypatch):
    """Past the memory budget one profile is pooled over the tomograms (``"*"``), and
    every particle takes it."""
    import tomohet.methods.noise_profile as npf

    parts, consensus, patterns = two_tomograms
    monkeypatch.setattr(npf, "MAX_PROFILE_VOXELS", D * D * (D // 2 + 1))  # one tomogram
    engine = EMEngine(parts, EMConfig(n_classes=1, batch_size=200), np.arange(len(parts)))
    profile, info = npf.estimate_noise_profile(engine, consensus)
    assert profile.tomograms == ["*"] and profile.power.shape[0] == 1
    shell = radial_shell_index(D, 3)
    inside = (shell >= 1) & (shell <= D // 2 - 1)
    mean = _relative((patterns["ts1"] + patterns["ts2"]) / 2, inside)
    err = float(((profile.power[0] - mean)[inside] / mean[inside]).abs().median())
    assert err < 0.1
    both = profile.for_tomograms(["ts2", "ts1", "other"])
    assert torch.equal(both[0], profile.power[0]) and torch.equal(both[2], profile.power[0])


def test_a_region_holding_more_noise_than_the_box_gets_its_own_dispersion():
    """Noise 2.25x stronger (in variance) inside a central ball than elsewhere, stationary
    in neither: the region test's likelihood is tempered by the ball's own dispersion
    (> 1.3 relative to the run's; measured 1.65), a region outside the ball keeps the run's
    (0.98)."""
    from tomohet.methods.discovery import Setup
    from tomohet.methods.region_test import MIN_REGION_DISPERSION, regional_setup

    maps = (_blob(0, (0, 0, 0), 4.0) * 5)[None]
    n = 300
    flat = {"ts": torch.ones(D, D, D // 2 + 1)}
    parts = _make_set(n, flat, maps, np.zeros(n, dtype=np.int64), 0.0, seed=6)
    c = torch.arange(D, dtype=torch.float32) - D / 2
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
    r = (zz**2 + yy**2 + xx**2).sqrt()
    ball = (r <= 3.5).float()
    gen = torch.Generator().manual_seed(8)
    amp = 1.0 + 0.5 * torch.nn.functional.avg_pool3d(ball[None, None], 3, 1, 1)[0, 0]
    noise = torch.randn((n, D, D, D), generator=gen) * amp * 0.02
    vols = parts.volumes.read(np.arange(n)).numpy() + noise.numpy()
    parts = dataclasses.replace(parts, volumes=ArrayVolumeSource(vols.astype(np.float32)))
    engine = EMEngine(parts, EMConfig(n_classes=1, batch_size=100), np.arange(n))
    noise_model = engine.noise_pass(maps, np.zeros(n, dtype=np.int64))
    setup = Setup(engine, engine, None, False, None, maps[0], noise_model)
    inside, rel_in = regional_setup(setup, ball, seed=0)
    shell = ((r > 5.5) & (r <= 7.5)).float()
    outside, rel_out = regional_setup(setup, shell, seed=0)
    assert rel_in > 1.3 and inside.plain.cfg.noise_dispersion == pytest.approx(rel_in)
    assert inside.plain is not engine and engine.cfg.noise_dispersion == 1.0
    assert rel_out < MIN_REGION_DISPERSION and outside is setup


def test_the_profile_reaches_passes_from_the_geometry_cache(two_tomograms):
    """Compacted batches cached before the profile was set (the consensus pass) would keep
    the old noise scale: after it, a reconstruction through the cache equals one without
    a cache."""
    parts, consensus, _ = two_tomograms
    n = len(parts)
    halves = np.arange(n) % 2
    maps = []
    for mb in (0.0, 512.0):
        engine = EMEngine(parts, EMConfig(n_classes=1, batch_size=200, cache_geometry_mb=mb),
                          np.arange(n))
        engine.reconstruct_pass(np.ones((n, 1)), None, halves)  # fills the cache
        noise = engine.noise_pass(consensus[None], np.zeros(n, dtype=np.int64))
        noise, info = with_noise_profile(engine, consensus, noise)
        assert info is not None and info["applied"]
        maps.append(engine.volumes_from(engine.reconstruct_pass(np.ones((n, 1)), noise,
                                                                halves))[0])
    torch.testing.assert_close(maps[1], maps[0], rtol=1e-4, atol=1e-4)

"""Stochastic hill climbing with annealing and consistency cleaning."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import make_tilt_set

from tomohet.methods.shc import SHC, match_labels, temperature_schedule

torch.set_num_threads(1)


def test_temperature_schedule_linear_to_zero():
    assert temperature_schedule(0, 10, 5) == 10
    assert temperature_schedule(2, 10, 4) == 5
    assert temperature_schedule(7, 10, 5) == 0
    assert temperature_schedule(0, 10, 0) == 0


def test_match_labels_hungarian():
    ref = np.array([0, 0, 1, 1, 2, 2])
    perm = np.array([2, 2, 0, 0, 1, 1])
    np.testing.assert_array_equal(match_labels(ref, perm, 3), ref)


def test_annealing_escapes_bad_start_plain_climbing_keeps():
    particles, labels, vols = make_tilt_set(n=120, box=24, n_tilts=13, snr=0.1, seed=2)
    same = [vols.mean(0), vols.mean(0)]  # identical references: no candidate ever improves
    start = {"init": "random", "focus_mask": None}  # a random partition, kept or escaped
    plain = SHC(n_classes=2, n_iter=5, n_runs=1, temperature=0.0, references=same,
                random_state=0, progress=False, **start).fit(particles)
    assert abs(adjusted_rand_score(labels, plain.predict())) < 0.1
    assert plain.history_[0][0]["changed_fraction"] == 0.0
    annealed = SHC(n_classes=2, n_iter=8, n_runs=1, temperature=30.0, anneal_iters=4,
                   references=same, random_state=0, progress=False, **start).fit(particles)
    assert adjusted_rand_score(labels, annealed.predict()) > 0.9


def test_consistency_one_without_noise_and_falls_with_noise():
    """Mean consistency is 1 without noise and falls as the noise grows (same particles,
    poses and states; only the noise level changes)."""
    means = []
    for snr in (0.0, 0.05, 0.003):
        data, labels, _ = make_tilt_set(n=60, box=24, n_tilts=13, snr=snr, seed=3)
        m = SHC(n_classes=2, n_iter=6, n_runs=3, random_state=1, progress=False).fit(data)
        proba = m.predict_proba()
        # consistency is the majority's share of the runs, and flags follow the threshold
        np.testing.assert_allclose(m.consistency_, proba.max(1))
        np.testing.assert_array_equal(m.consistent_, m.consistency_ >= 0.8)
        if snr == 0.0:
            assert adjusted_rand_score(labels, m.predict()) == 1.0
            assert m.consistency_.min() == 1.0 and m.consistent_.all()
        means.append(float(m.consistency_.mean()))
    assert means[0] == 1.0
    assert means[0] >= means[1] > means[2], means


def test_align_runs_uses_medoid_not_first_run():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 50)
    bad = rng.integers(0, 2, 100)  # a run stuck in a poor optimum, listed first
    good1 = 1 - truth  # same partition as truth, other class names
    good2 = truth.copy()
    good2[:3] = 1
    from tomohet.methods.shc import align_runs

    aligned = align_runs(np.stack([bad, good1, good2]), 2)
    votes = np.stack([(aligned == c).sum(0) for c in range(2)], axis=1).argmax(1)
    assert adjusted_rand_score(truth, votes) > 0.85
    # the good runs agree with each other after alignment
    assert (aligned[1] == aligned[2]).mean() > 0.95


def test_figure_of_merit_filter_damps_unresolved_class():
    from tomohet.methods.shc import figure_of_merit_filter

    g = torch.Generator().manual_seed(0)
    signal = torch.randn(16, 16, 16, generator=g)
    noise_a, noise_b = torch.randn(2, 16, 16, 16, generator=g)
    halves = torch.stack([signal, signal, noise_a, noise_b])  # class 0 resolved, 1 noise
    out = figure_of_merit_filter(halves)
    torch.testing.assert_close(out[0], signal, atol=1e-4, rtol=1e-4)
    assert float(out[2].norm()) < 0.5 * float(noise_a.norm())


def test_shared_figure_of_merit_filter_weights_every_class_alike():
    """shared=True (region splits): both classes get sqrt of the mean FSC, so a map
    common to both classes cancels in their difference; filtered per class it does not."""
    from tomohet.methods.shc import figure_of_merit_filter
    from tomohet.physics.fourier import ft_to_volume, radial_shell_index, volume_to_ft
    from tomohet.physics.fsc import fsc

    g = torch.Generator().manual_seed(0)
    common = torch.randn(16, 16, 16, generator=g)
    noise = torch.randn(2, 16, 16, 16, generator=g)
    # class 0: the common map in both halves (FSC 1); class 1: it plus noise (FSC < 1)
    halves = torch.stack([common, common, common + noise[0], common + noise[1]])
    curve = fsc(halves[0::2], halves[1::2]).clamp(0, 1)
    curve[:, 0] = 1.0
    shell = radial_shell_index(16, 3).clamp_max(curve.shape[1] - 1)

    def weighted(vol, w):
        return ft_to_volume(volume_to_ft(vol) * w, 16)

    w_mean = torch.sqrt(curve.mean(0))[shell]
    shared = figure_of_merit_filter(halves, shared=True)
    torch.testing.assert_close(shared, weighted(halves, w_mean), atol=1e-4, rtol=1e-4)
    # class 1 - class 0 (first halves): only class 1's noise, filtered
    torch.testing.assert_close(shared[2] - shared[0], weighted(noise[0], w_mean),
                               atol=1e-4, rtol=1e-4)
    own = figure_of_merit_filter(halves)
    left = own[2] - own[0] - weighted(noise[0], torch.sqrt(curve[1])[shell])
    assert float(left.norm()) > 0.1 * float(common.norm())  # (w1 - w0) x common


def test_half_set_renaming_permutes_sums_like_a_fresh_backprojection():
    """_references renames half-1 classes by permuting accumulated sums; that must equal
    back-projecting again with the renamed labels."""
    from tomohet.data.keys import half_sets
    from tomohet.methods.em import EMConfig, EMEngine
    from tomohet.methods.shc import rename_half_one
    from tomohet.physics.reconstruction import wiener_reconstruct

    particles, _, _ = make_tilt_set(n=40, box=16, n_tilts=5, snr=0.1, seed=4)
    engine = EMEngine(particles, EMConfig(n_classes=3), np.arange(40))
    halves = half_sets(particles.names, particles.tomo_names, seed=1)
    labels = np.arange(40) % 3
    rename = np.array([2, 0, 1])
    bp = engine.reconstruct_pass(np.eye(3)[labels], None, halves)
    rename_half_one(bp, rename)
    renamed = labels.copy()
    renamed[halves == 1] = rename[labels[halves == 1]]
    fresh = engine.reconstruct_pass(np.eye(3)[renamed], None, halves)
    torch.testing.assert_close(wiener_reconstruct(bp), wiener_reconstruct(fresh),
                               atol=1e-5, rtol=1e-4)

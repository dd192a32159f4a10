"""Issue 12: stochastic hill climbing region by region (methods/shc_regions.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import blob_volume, complex_points, make_tilt_set

from tomohet.methods import shc as shc_module
from tomohet.methods.factorial import region_posteriors
from tomohet.methods.shc import SHC

torch.set_num_threads(1)

N = 160


@pytest.fixture(scope="module")
def two_components():
    """Two independent surface blobs, 1/21 (4.8%) of the mass each, on opposite sides:
    four states, 40 particles each."""
    base = complex_points()
    cap_a, cap_b = (8.0, 1.0, -1.0), (-8.0, -1.0, 1.0)
    vols = torch.stack([blob_volume(24, base + extra) for extra in
                        ([], [cap_a], [cap_b], [cap_a, cap_b])])
    particles, lab, _ = make_tilt_set(n=N, box=24, n_tilts=15, snr=0.3, seed=7,
                                      volumes=vols, labels=np.arange(N) % 4)
    return particles, lab


def _shc(**kw) -> SHC:
    params = dict(n_classes=4, n_iter=6, n_runs=2, anneal_iters=2, progress=False,
                  random_state=0)
    return SHC(**{**params, **kw})


@pytest.fixture(scope="module")
def fitted(two_components):
    particles, _ = two_components
    return _shc().fit(particles)


def test_default_climbs_each_region_and_finds_both_components(two_components, fitted):
    """Defaults (split="regions"): two regions, one two-class climb each per run, and
    the four states (joint K-class climb on these data: ARI 0.85)."""
    _, labels = two_components
    m = fitted
    assert m.discovery_ is not None and len(m.discovery_.regions) == 2
    assert len(m.history_) == 2  # one history per run, each the climbs of both regions
    for run in m.history_:
        assert {h["region"] for h in run} == {0, 1}
        assert {h["stage"] for h in run} <= {"region search", "region split"}
        assert all(len(h["populations"]) == 2 for h in run)  # two-class climbs
    assert adjusted_rand_score(labels, m.predict()) > 0.9
    assert np.all(np.abs(np.bincount(m.predict(), minlength=4) - N // 4) <= 4)
    assert m.consistent_.mean() > 0.9  # the runs agree
    np.testing.assert_allclose(m.predict_proba().sum(1), 1.0)
    assert torch.isfinite(m.class_volumes_).all()


def test_saved_summary_says_region_by_region(two_components, fitted, tmp_path):
    import json

    particles, _ = two_components
    fitted.save(tmp_path, particles)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["regions"] == 2
    assert "Classified region by region" in summary["statement"]
    np.testing.assert_allclose(fitted.priors_, np.bincount(fitted.predict(), minlength=4)
                               / N)


def test_regions_row_permutation_gives_same_result_per_particle(two_components, fitted):
    particles, _ = two_components
    perm = np.random.default_rng(123).permutation(N)
    b = _shc().fit(particles.subset(perm))
    inv = np.argsort(perm)
    np.testing.assert_array_equal(fitted.predict(), b.predict()[inv])
    np.testing.assert_array_equal(fitted.consistency_, b.consistency_[inv])


def test_split_joint_is_the_one_k_class_climb(two_components, monkeypatch):
    """split="joint": the region path is never entered; every run is one K-class climb
    (the behaviour before split existed)."""
    particles, labels = two_components

    def refuse(*args, **kw):
        raise AssertionError("split='joint' must not climb region by region")

    monkeypatch.setattr(shc_module, "climb_regions", refuse)
    m = _shc(split="joint", n_runs=1).fit(particles)
    assert len(m.discovery_.regions) == 2  # regions were found, and not used
    assert all("stage" not in h and len(h["populations"]) == 4 for h in m.history_[0])


def test_unknown_split_is_refused_before_any_work(two_components):
    particles, _ = two_components
    with pytest.raises(ValueError, match="split must be 'regions' or 'joint'"):
        _shc(split="tree").fit(particles)


def test_classify_shc_split_flag():
    import argparse

    from tomohet.cli import classify_shc

    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int)
    parser.add_argument("--batch-size", type=int, default=32)
    sub = parser.add_subparsers()
    classify_shc.add_parser(sub)
    assert classify_shc.params(parser.parse_args(["--k", "4", "shc"]))["split"] == "regions"
    args = parser.parse_args(["--k", "4", "shc", "--split", "joint"])
    assert classify_shc.params(args)["split"] == "joint"
    with pytest.raises(SystemExit):
        parser.parse_args(["--k", "4", "shc", "--split", "tree"])


def test_region_posteriors_combine_hard_climbs_bit_by_bit():
    """Hard two-class labels per region (one-hot posteriors, as hill climbing gives)
    combine into class b0 + 2 b1; each split sees every particle and its own region's
    start; histories are tagged by region and numbered on."""
    from types import SimpleNamespace

    n = 12
    bits = [np.arange(n) % 2, (np.arange(n) // 2) % 2]
    masks = [torch.full((4, 4, 4), float(i)) for i in (1, 2)]
    found = SimpleNamespace(regions=masks, region_labels=[b.copy() for b in bits],
                            candidates=[], region_tests=[])
    # no consensus: the regions' masks are not redrawn (methods/region_refine)
    setup = SimpleNamespace(discovery=found, plain=SimpleNamespace(index=np.arange(n)),
                            consensus=None)
    seen = []

    def split(members, mask, init):
        seen.append((members.copy(), float(mask[0, 0, 0]), init.copy()))
        return np.eye(2)[init], [{"iteration": 1}, {"iteration": 2}], torch.ones(3)

    post, history, sigma2 = region_posteriors(setup, split, 4, np.zeros(n, int), 0.02, 0)
    np.testing.assert_array_equal(post.argmax(1), bits[0] + 2 * bits[1])
    assert set(np.unique(post)) == {0.0, 1.0}
    assert [s[1] for s in seen] == [1.0, 2.0]
    assert all(np.array_equal(s[0], np.arange(n)) for s in seen)
    assert [(h["iteration"], h["region"]) for h in history] == [(1, 0), (2, 0), (3, 1),
                                                                (4, 1)]
    assert torch.equal(sigma2, torch.ones(3))

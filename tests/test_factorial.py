"""Issue 12: independent components classified region by region (methods/factorial)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import blob_volume, complex_points, make_tilt_set

from tomohet.methods.factorial import combine_posteriors, region_posteriors
from tomohet.methods.ml import ML2D
from tomohet.methods.regions import n_regions_for

torch.set_num_threads(1)


def test_combine_posteriors_is_the_product_per_region():
    rng = np.random.default_rng(0)
    a = rng.dirichlet([1, 1], size=7)
    b = rng.dirichlet([1, 1], size=7)
    out = combine_posteriors([a, b], 5)
    assert out.shape == (7, 5)
    for c in range(4):  # brute force: class c = bit0 (region a) + 2 bit1 (region b)
        np.testing.assert_allclose(out[:, c], a[:, c & 1] * b[:, c >> 1], rtol=1e-12)
    assert np.all(out[:, 4] == 0)
    np.testing.assert_allclose(out.sum(1), 1.0)
    with pytest.raises(ValueError, match="more than K"):
        combine_posteriors([a, b], 3)
    assert [n_regions_for(k) for k in (1, 2, 3, 4, 7, 8)] == [0, 1, 1, 2, 2, 3]


@pytest.fixture(scope="module")
def two_components():
    """Two independent surface blobs, 1/21 (4.8%) of the mass each, on opposite sides:
    four states."""
    base = complex_points()
    cap_a, cap_b = (8.0, 1.0, -1.0), (-8.0, -1.0, 1.0)
    vols = torch.stack([blob_volume(24, base + extra) for extra in
                        ([], [cap_a], [cap_b], [cap_a, cap_b])])
    labels = np.arange(160) % 4
    particles, lab, _ = make_tilt_set(n=160, box=24, n_tilts=15, snr=0.3, seed=7,
                                      volumes=vols, labels=labels)
    return particles, lab


def test_ml2d_splits_each_region(two_components):
    """Defaults (split="regions"): two regions, one two-class split each (a first
    "region search" when the split redraws its mask), four classes."""
    particles, labels = two_components
    m = ML2D(n_classes=4, n_iter=8, random_state=0, progress=False).fit(particles)
    assert m.discovery_ is not None and len(m.discovery_.regions) == 2
    assert {h["region"] for h in m.history_} == {0, 1}
    assert {h["stage"] for h in m.history_} <= {"region search", "region split"}
    for r in (0, 1):
        assert [h for h in m.history_ if h["region"] == r][-1]["stage"] == "region split"
    np.testing.assert_allclose(m.posteriors_.sum(1), 1.0, atol=1e-6)
    assert adjusted_rand_score(labels, m.predict()) > 0.9


def test_fewer_regions_than_k_leaves_classes_empty_and_says_so(two_components, tmp_path):
    """K = 8 asks for three regions; the data have two: four classes hold particles,
    four stay empty, the maps stay finite, and summary.json says why. The half-set test
    compares the classes that hold particles only."""
    import json

    particles, labels = two_components
    m = ML2D(n_classes=8, n_iter=6, random_state=0, progress=False).fit(particles)
    assert len(m.discovery_.regions) == 2
    assert np.all(m.priors_[4:] == 0) and np.all(m.predict() < 4)
    assert adjusted_rand_score(labels, m.predict()) > 0.9
    assert torch.isfinite(m.class_volumes_).all()
    m.save(tmp_path, particles)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["regions"] == 2
    assert "2 region(s) split in two; 4 of the 8 classes asked hold particles" in \
        summary["statement"]
    assert "Class(es) 5, 6, 7, 8 are empty" in summary["statement"]
    assert all(max(p["classes"]) <= 4 for p in summary["pairs"])


def test_the_statement_counts_the_class_splits_and_the_classes_that_hold_particles():
    """The note on the region path is read from what ran: regions split, class splits
    after them, the classes that hold particles (a run whose first region was split
    again class by class into four classes must not say that classes 3-4 are empty)."""
    from types import SimpleNamespace

    from tomohet.methods.outputs import _region_note

    hist = [{"stage": "region search", "region": 0}, {"stage": "region split", "region": 0},
            {"stage": "class split", "split_class": 0, "new_class": 2},
            {"stage": "class split", "split_class": 0, "new_class": 2},
            {"stage": "class split", "split_class": 1, "new_class": 3}]
    note, regions = _region_note(SimpleNamespace(history_=hist),
                                 np.array([0.3, 0.2, 0.3, 0.2]))
    assert regions == 1
    assert "1 region(s) split in two, then 2 class split(s)" in note
    assert "4 of the 4 classes asked hold particles" in note and "empty" not in note
    note, _ = _region_note(SimpleNamespace(history_=hist[:2]), np.array([0.6, 0.4, 0, 0]))
    assert "2 of the 4 classes asked" in note and "Class(es) 3, 4 are empty" in note
    assert _region_note(SimpleNamespace(history_=[]), np.array([0.5, 0.5])) == ("", 0)


def test_states_inside_one_region_are_split_class_by_class():
    """Three states in one place (nothing, a blob, the blob and its neighbour): one
    region holds all the variance; its two-class split leaves one class that still
    varies, which is split again (hierarchical), giving the three states."""
    base = complex_points()
    x, y = (8.0, 1.0, -1.0), (8.5, 3.5, -1.0)
    vols = torch.stack([blob_volume(24, base + extra) for extra in ([], [x], [x, y])])
    labels = np.arange(150) % 3
    particles, lab, _ = make_tilt_set(n=150, box=24, n_tilts=15, snr=0.3, seed=11,
                                      volumes=vols, labels=labels)
    m = ML2D(n_classes=3, n_iter=8, random_state=0, progress=False).fit(particles)
    stages = [h["stage"] for h in m.history_]
    assert "class split" in stages, stages
    assert adjusted_rand_score(lab, m.predict()) > 0.85


def test_components_mostly_present_together_are_told_apart_by_class_splits():
    """Two caps present together in 84% of the particles (both or neither; each alone
    in 8%, phi 0.68): the components are not independent, so the second region's split
    repeats the first's and is not kept as a region (``_redundant``); the two rare
    states then come from class splits. All four states are found."""
    base = complex_points()
    cap_a, cap_b = (8.0, 1.0, -1.0), (-8.0, -1.0, 1.0)
    vols = torch.stack([blob_volume(24, base + extra) for extra in
                        ([], [cap_a], [cap_b], [cap_a, cap_b])])
    labels = np.random.default_rng(0).permutation(np.repeat([0, 1, 2, 3], [84, 16, 16, 84]))
    particles, lab, _ = make_tilt_set(n=200, box=24, n_tilts=15, snr=0.3, seed=7,
                                      volumes=vols, labels=labels)
    m = ML2D(n_classes=4, n_iter=8, random_state=0, progress=False).fit(particles)
    assert m.discovery_ is not None and len(m.discovery_.regions) == 2
    assert {h["region"] for h in m.history_ if "region" in h} == {0}
    assert [h["iteration"] for h in m.history_] == list(range(1, len(m.history_) + 1))
    assert "class split" in {h["stage"] for h in m.history_}
    assert adjusted_rand_score(lab, m.predict()) > 0.9


def test_combinations_no_particle_takes_are_freed():
    """Two regions that are two subunits: "neither" is taken by no particle, so the
    components are not independent; its column is freed (mass to the others) for the
    class splits that follow (discrete-easy: ARI 0.74 -> 1.0 with this)."""
    from tomohet.methods.factorial import _drop_empty

    rng = np.random.default_rng(1)
    post = combine_posteriors([rng.dirichlet([1, 1], 50), rng.dirichlet([1, 1], 50)], 5)
    winner = post[:, :4].argmax(1)
    post[winner == 2, 2] = 0.0  # nobody's best is combination 2 any more ...
    post /= post.sum(1, keepdims=True)
    counts = np.bincount(post[:, :4].argmax(1), minlength=4)
    assert counts[2] == 0 and (counts[[0, 1, 3]] > 0).all()
    out, kept = _drop_empty(post, 4, 0.02)
    assert kept == 3
    expect = post[:, [0, 1, 3]] / post[:, [0, 1, 3]].sum(1, keepdims=True)
    np.testing.assert_allclose(out[:, :3], expect, rtol=1e-12)
    assert np.all(out[:, 3:] == 0)


def test_unknown_split_is_refused_before_any_work(two_components):
    particles, _ = two_components
    with pytest.raises(ValueError, match="split must be 'regions' or 'joint'"):
        ML2D(n_classes=4, split="tree", progress=False).fit(particles)


def _fake_setup(n: int, n_candidates: int):
    from types import SimpleNamespace

    from tomohet.methods.discovery import Discovery, Setup

    zeros = torch.zeros(4, 4, 4)
    masks = [torch.full((8, 8, 8), float(i + 1)) for i in range(1 + n_candidates)]
    rng = np.random.default_rng(0)
    cands = [(masks[1 + c], rng.integers(0, 2, n), rng.integers(0, 2, n))
             for c in range(n_candidates)]
    found = Discovery(masks[0], np.zeros(n, np.int64), zeros, zeros, 4, 1.0,
                      regions=[masks[0]], region_labels=[rng.integers(0, 2, n)],
                      candidates=cands)
    plain = SimpleNamespace(index=np.arange(n))
    return Setup(None, plain, found, True, masks[0], torch.zeros(8, 8, 8)), masks


def test_further_candidates_split_only_when_the_held_out_test_accepts():
    """K = 4 and one region: the candidates are tested in turn at CANDIDATE_ALPHA (0.05)
    / (number of candidates); the first is rejected (p above that level, though below
    0.05), the second accepted at p 0.012 (component B of the ladder's 30% / 18% cell at
    SNR 0.02 had p 0.0116, which the earlier 0.01 / 3 rejected) and split; then K holds
    no more regions, so the third is not even tested. Each test is recorded."""
    from tomohet.methods.region_test import RegionTest

    n = 64
    setup, masks = _fake_setup(n, 3)
    state = np.arange(n) % 4
    truth = {1: state % 2, 3: state // 2}  # mask value -> the particles' true split
    calls = []

    def split(members, mask, init):
        key = int(mask.flatten()[0])
        lab = truth.get(key, np.arange(n) // 32)  # candidates 1, 3 (mask values 2, 4): noise
        return np.eye(2)[lab[members]] * 0.98 + 0.01, [{"log_likelihood": 0.0}], torch.ones(3)

    def test(mask, fold_labels):
        key = int(mask.flatten()[0])
        calls.append(key)
        return RegionTest(np.full(n, 0.5), 0.0, {2: 0.03, 3: 0.012}.get(key, 0.5))

    post, history, _ = region_posteriors(setup, split, 4, np.arange(n) % 2, 0.02, 0, test)
    assert calls == [2, 3]  # 0.03 > 0.05 / 3: rejected; 0.012 accepted
    assert [t["accepted"] for t in setup.discovery.region_tests] == [False, True]
    assert {h["region"] for h in history} == {0, 1}
    assert adjusted_rand_score(state, post.argmax(1)) == 1.0


@pytest.fixture
def no_class_splits(monkeypatch):
    """The class splits that follow the regions find nothing left to split."""
    from tomohet.methods import factorial

    monkeypatch.setattr(factorial, "_class_model", lambda *a: (None, None, None))
    monkeypatch.setattr(factorial, "local_region", lambda *a, **k: None)


def test_a_candidate_that_repeats_a_region_is_not_kept(no_class_splits):
    """A candidate accepted by the test whose split sorts the particles as the first
    region's did (that component's signal reaching into it) adds no state."""
    from tomohet.methods.region_test import RegionTest

    n = 64
    setup, _ = _fake_setup(n, 1)
    first = np.arange(n) % 2

    def split(members, mask, init):
        return np.eye(2)[first[members]], [{"log_likelihood": 0.0}], torch.ones(3)

    def test(mask, fold_labels):
        return RegionTest(np.full(n, 0.5), 9.0, 1e-9)

    post, history, _ = region_posteriors(setup, split, 4, np.arange(n) % 2, 0.02, 0, test)
    assert setup.discovery.region_tests[0]["repeats_region"] == 0
    assert not setup.discovery.region_tests[0]["accepted"]
    assert {h["region"] for h in history} == {0}


def _setup_without_regions(n: int, n_candidates: int):
    setup, masks = _fake_setup(n, n_candidates)
    found = setup.discovery
    found.regions, found.region_labels, found.region, found.focus = [], [], "none", None
    return setup, masks


@pytest.mark.parametrize("p_second", [1e-6, 0.5])
def test_a_held_out_candidate_becomes_the_first_region_when_the_variance_test_misses(
        no_class_splits, p_second):
    """No region above the variance test: its candidates are held-out tested; an
    accepted one is split and becomes the (local) region and focus; when none is
    accepted, region_posteriors returns None (the classifier falls back)."""
    from tomohet.methods.region_test import RegionTest

    n = 64
    setup, masks = _setup_without_regions(n, 2)
    truth = np.arange(n) % 2

    def split(members, mask, init):
        return np.eye(2)[truth[members]], [{"log_likelihood": 0.0}], torch.ones(3)

    def test(mask, fold_labels):
        key = int(mask.flatten()[0])
        return RegionTest(np.full(n, 0.5), 5.0, {2: 0.5, 3: p_second}[key])

    out = region_posteriors(setup, split, 4, np.arange(n) % 2, 0.02, 0, test)
    found = setup.discovery
    assert [t["accepted"] for t in found.region_tests] == [False, p_second < 0.005]
    if p_second > 0.005:
        assert out is None and found.region == "none" and found.focus is None
        return
    post, history, _ = out
    assert found.region == "local" and torch.equal(found.focus, masks[2])
    assert adjusted_rand_score(truth, post.argmax(1)) == 1.0
    assert {h["region"] for h in history} == {0}


@pytest.fixture(scope="module")
def five_percent():
    """One surface blob of 1/21 (4.8%) of the mass, present in half the particles."""
    base = complex_points()
    vols = torch.stack([blob_volume(24, base), blob_volume(24, base + [(8.0, 1.0, -1.0)])])
    particles, lab, _ = make_tilt_set(n=120, box=24, n_tilts=15, snr=0.3, seed=5,
                                      volumes=vols, labels=np.arange(120) % 2)
    return particles, lab


@pytest.mark.parametrize("method", ["ml2d", "shc"])
def test_the_component_is_found_by_the_held_out_test_when_the_variance_test_misses(
        monkeypatch, five_percent, method):
    """End to end: the variance test made blind (its region is "none"), ml2d and shc
    still find the 5% component through the held-out test of the candidates, and say
    how."""
    from tomohet.methods import discovery
    from tomohet.methods.evidence import run_summary
    from tomohet.methods.shc import SHC

    monkeypatch.setattr(discovery, "region_from", lambda det: ("none", None, 0.0))
    particles, lab = five_percent
    m = (ML2D(n_classes=2, n_iter=6, random_state=0, progress=False) if method == "ml2d"
         else SHC(n_classes=2, n_iter=5, n_runs=2, random_state=0, progress=False))
    m.fit(particles)
    found = m.discovery_
    assert found.regions == [] and found.region == "local" and m.focus_mask_ is not None
    assert found.region_tests[0]["accepted"]
    assert adjusted_rand_score(lab, m.predict()) > 0.9
    summary, _ = run_summary(found, None, 1.0)
    assert "held-out likelihood test found a candidate region real" in summary["statement"]


@pytest.mark.parametrize("snr", [0.3, 0.05])
def test_one_state_data_give_no_held_out_region(monkeypatch, snr):
    """The null of the same path: every particle the same complex, the variance test
    made blind as above. No candidate may be accepted, and the classifier falls back."""
    from tomohet.methods import discovery

    monkeypatch.setattr(discovery, "region_from", lambda det: ("none", None, 0.0))
    base = complex_points()
    vol = blob_volume(24, base + [(8.0, 1.0, -1.0)])
    particles, _, _ = make_tilt_set(n=160, box=24, n_tilts=15, snr=snr, seed=7,
                                    volumes=torch.stack([vol, vol]),
                                    labels=np.arange(160) % 2)
    m = ML2D(n_classes=2, n_iter=4, random_state=0, progress=False).fit(particles)
    found = m.discovery_
    assert found.candidates and found.region_tests
    assert not any(t["accepted"] for t in found.region_tests), found.region_tests
    assert found.region == "none"


def test_the_held_out_reference_is_the_splits_own_mean(monkeypatch, five_percent):
    """A split whose two class maps are equal predicts held-out particles exactly as its
    mean does: zero gain, not accepted -- whatever a separately fitted one-class map would
    give (one filtered otherwise made a split of one-state data pass at z 8.7)."""
    import dataclasses

    from tomohet.methods import region_test

    particles, _ = five_percent
    m = ML2D(n_classes=2, n_iter=3, random_state=0, progress=False).fit(particles)
    real = region_test.focused_fit

    def equal_maps(model, setup, particles, members, mask, labels, halves, progress=None):
        st = real(model, setup, particles, members, mask, labels, halves, progress)
        v = st.volumes[:1] * (0.5 if model.n_classes == 1 else 1.0)
        return dataclasses.replace(st, volumes=v.repeat(model.n_classes, 1, 1, 1))

    monkeypatch.setattr(region_test, "focused_fit", equal_maps)
    n = particles.n_particles
    result = region_test.em_region_test(m, m.setup_, particles, m.focus_mask_,
                                        np.arange(n) % 2, m.half_sets_, 0)
    np.testing.assert_allclose(result.gain, 0.0, atol=1e-4)  # float32 passes
    assert not result.accepts(0.01)


def test_a_later_regions_redraw_is_kept_out_of_earlier_regions_as_redrawn(no_class_splits):
    """Region 1's redraw excludes region 0's mask as region 0 was redrawn (where its split
    differs), not as discovered, and region 2's, not yet split, as discovered."""
    n = 64

    def slab(i: int) -> torch.Tensor:  # masks told apart by the slab they cover
        m = torch.zeros((8, 8, 8))
        m[i] = 1.0
        return m

    def which(m: torch.Tensor) -> int:
        return int(m.sum((1, 2)).argmax())

    setup, _ = _fake_setup(n, 0)
    found = setup.discovery
    found.regions = [slab(0), slab(1), slab(2)]
    found.region_labels = [np.zeros(n, np.int64)] * 3
    seen: dict[int, list[int]] = {}
    labels = {0: np.arange(n) % 2, 5: np.arange(n) % 2, 1: (np.arange(n) // 2) % 2,
              2: (np.arange(n) // 4) % 2}

    def split(members, mask, init):
        return np.eye(2)[labels[which(mask)][members]], [{"log_likelihood": 0.0}], \
            torch.ones(3)

    def redraw(post, mask, exclude):
        seen.setdefault(which(mask), [which(m) for m in exclude])
        return slab(5) if which(mask) == 0 else None

    region_posteriors(setup, split, 8, np.arange(n) % 2, 0.02, 0, redraw=redraw)
    assert seen[0] == [1, 2]  # region 0: the others as discovered
    assert seen[5] == [1, 2]  # region 0 redrawn, split again
    assert seen[1] == [5, 2]  # region 1: region 0 as redrawn
    assert seen[2] == [5, 1]

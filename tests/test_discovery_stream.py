"""Discovery streamed (issue 17): the test from sums over blocks of particles and the
partition from maps kept on disk give what the in-memory code gives, whatever the block
order, the batch size or the number of ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel
from tomohet.methods import residual_scan
from tomohet.methods.detection import (
    SCALES,
    VarianceStats,
    _blockwise_variances,
    _cube_root,
    _null_maxima,
    detect,
    gaussian_lowpass,
    robust_z,
    shell_floor,
    shell_index,
    split_matrix,
)
from tomohet.methods.discovery import component_labels
from tomohet.methods.residual_scan import ResidualScan

torch.set_num_threads(1)


def _reference_detect(maps, splits, scales=SCALES, alpha=0.01, radius=None):
    """The in-memory test as it was before streaming: each scale's low-passed maps
    whole, variances by voxel blocks (torch's two-pass variance)."""
    n, d = maps.shape[0], maps.shape[-1]
    inside = shell_index(d) <= (d / 2 - 1 if radius is None else radius)
    w = torch.as_tensor(splits, dtype=torch.float64)
    null = np.full(w.shape[0], -np.inf)
    zs = []
    for s in scales:
        va, vb, var_flat = _blockwise_variances(gaussian_lowpass(maps, s).reshape(n, -1), w)
        var = var_flat.reshape(d, d, d)
        floor = shell_floor(var, inside)
        zs.append(robust_z(_cube_root(var / floor), inside).float())
        half = (_cube_root(va / floor.reshape(1, -1)) - _cube_root(vb / floor.reshape(1, -1)))
        null = np.maximum(null, _null_maxima(half / 2.0, inside))
    z = torch.stack(zs).max(0).values
    return z, null, float(np.quantile(null, 1 - alpha))


def _maps(n=240, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = gaussian_lowpass(torch.randn((n, d, d, d), generator=g), 0.6) + 0.3
    c = torch.arange(d, dtype=torch.float32) - d // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    bump = 0.5 * torch.exp(-((x - 2) ** 2 + (y + 2) ** 2 + z**2) / 3.0)
    present = torch.as_tensor(np.arange(n) % 3 == 0)
    rng = np.random.default_rng(seed)
    splits = split_matrix(rng.integers(0, 2**63, size=(n, 2)).astype(np.uint64), 99)
    return maps + present[:, None, None, None] * bump, splits, bump


def test_detect_from_sums_equals_the_in_memory_test_in_any_block_order():
    maps, splits, _ = _maps()
    z_ref, null_ref, thr_ref = _reference_detect(maps, splits)
    det = detect(maps, splits, alpha=0.01)
    assert det.significant
    torch.testing.assert_close(det.z, z_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(det.null, null_ref, rtol=1e-6)
    assert det.threshold == pytest.approx(thr_ref, rel=1e-6)
    z_small, _, thr_small = _reference_detect(maps, splits, radius=3.0)  # a smaller sphere
    inner = detect(maps, splits, alpha=0.01, radius=3.0)
    torch.testing.assert_close(inner.z, z_small, rtol=1e-5, atol=1e-5)
    assert inner.threshold == pytest.approx(thr_small, rel=1e-6) and thr_small != thr_ref
    # blocks of 17 rows in a shuffled order, as ranks and batches would bring them
    stats = VarianceStats(splits, maps.shape[-1])
    perm = np.random.default_rng(1).permutation(len(maps))
    for lo in range(0, len(perm), 17):
        stats.add(perm[lo : lo + 17], maps[perm[lo : lo + 17]])
    other = stats.detection(alpha=0.01)
    torch.testing.assert_close(other.z, det.z, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(other.variance, det.variance, rtol=1e-6, atol=0)
    np.testing.assert_allclose(other.null, det.null, rtol=1e-9)
    assert other.p_value == det.p_value
    with pytest.raises(ValueError, match="rows"):
        stats.add(np.arange(3), maps[:4])


def _scan(maps, splits, block=13):
    order = np.random.default_rng(2).permutation(len(maps))  # batches in any order
    batches = ((order[lo : lo + block], maps[order[lo : lo + block]])
               for lo in range(0, len(order), block))
    return ResidualScan(len(maps), maps.shape[-1], splits, batches)


def _svd_scores(maps, scale, mask, r):
    x = gaussian_lowpass(maps, scale).reshape(len(maps), -1).double()
    if mask is not None:
        w = mask.reshape(-1).double()
        x = x[:, w > 0.05] * w[w > 0.05]
    u, s, _ = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    return (u[:, :r] * s[:r]).numpy()


@pytest.mark.parametrize("gram_max", [residual_scan.GRAM_MAX, 10])
def test_scan_scores_and_labels_equal_svd_on_all_maps(monkeypatch, gram_max):
    """Scores on the leading components from the disk store (covariance, or subspace
    iteration beyond GRAM_MAX voxels) equal the SVD of all maps up to sign; the labels
    equal component_labels on the maps in memory."""
    monkeypatch.setattr(residual_scan, "GRAM_MAX", gram_max)
    maps, splits, bump = _maps()
    mask = (bump / bump.max()).clamp(0, 1)
    order = np.random.default_rng(3).permutation(len(maps))
    with _scan(maps, splits) as scan:
        torch.testing.assert_close(scan.detection().z, detect(maps, splits).z,
                                   rtol=1e-6, atol=1e-6)
        for scale, msk, r in [(0.75, mask, 2), (1.5, None, 1), (0.5, mask, 1)]:
            got, ref = scan.features(scale, msk, r), _svd_scores(maps, scale, msk, r)
            signs = np.sign((got * ref).sum(0))
            np.testing.assert_allclose(got * signs, ref, atol=1e-6 * np.abs(ref).max())
        labels = scan.labels(0.75, mask, 2, order, seed=4)
    ref_labels = component_labels(gaussian_lowpass(maps, 0.75), mask, 2, order, seed=4)
    np.testing.assert_array_equal(labels, ref_labels)
    assert len(np.unique(labels)) == 2


# ------------------------------------------------------------- through an EM engine
N, BOX = 96, 24


def _discover(batch_size: int):
    from tomohet.data.keys import half_sets
    from tomohet.methods.discovery import discover
    from tomohet.methods.em import EMConfig, EMEngine

    particles, _, _ = make_tilt_set(n=N, box=BOX, n_tilts=9, snr=1.0, seed=7)
    engine = EMEngine(particles, EMConfig(n_classes=1, batch_size=batch_size),
                      np.arange(N))
    halves = half_sets(particles.names, particles.tomo_names, 0, None)
    consensus = engine.volumes_from(engine.reconstruct_pass(np.ones((N, 1)), None,
                                                            halves))[0][0]
    noise = engine.noise_pass(consensus[None], np.zeros(N, dtype=np.int64))
    return engine, consensus, noise, discover(engine, consensus, noise, 2, seed=0)


def _discover_rank(out: Path) -> None:
    _, _, _, found = _discover(batch_size=8)
    if parallel.is_main():
        np.savez(out / "two.npz", z=found.z.numpy(), labels=found.labels,
                 threshold=found.threshold, p=found.p_value, region=found.region,
                 region_labels=np.stack(found.region_labels))


def test_discover_streamed_equals_in_memory_and_ignores_batch_size_and_ranks(tmp_path):
    """One rank: the streamed discovery gives the in-memory composition's z-map,
    threshold and partition (residual_maps, the pre-stream test, component_labels);
    batch size 8 vs 5 and 2 gloo ranks vs 1 give the same."""
    engine, consensus, noise, found = _discover(batch_size=5)
    assert found.region == "local" and found.region_labels  # a set with a component
    from tomohet.methods.discovery import (
        null_splits,
        region_from,
        region_scale,
        residual_maps,
        support_radius,
        upsample_mask,
    )
    from tomohet.methods.regions import candidate_regions

    maps = residual_maps(engine, consensus, noise, found.small_box)
    splits = null_splits(engine.names, engine.tomo_names, 0, 99)
    radius = found.search_radius
    z_ref, _, thr_ref = _reference_detect(maps, splits, radius=radius)
    torch.testing.assert_close(found.z, z_ref, rtol=1e-5, atol=1e-5)
    assert found.threshold == pytest.approx(thr_ref, rel=1e-5)
    det = detect(maps, splits, radius=radius)
    region, focus_small, scale = region_from(det)
    assert (region, scale) == (found.region, found.scale)
    ref = component_labels(gaussian_lowpass(maps, scale), focus_small, 2, engine.order, 0)
    np.testing.assert_array_equal(found.labels, ref)
    np.testing.assert_array_equal(found.region_labels[0], component_labels(
        gaussian_lowpass(maps, region_scale(det)), candidate_regions(det, region_scale(det),
                                                                     1)[0],
        2, engine.order, 0))
    # factorial's test inside a class, streamed, equals it on the maps in memory
    # (the class-split test's steps on maps in memory, searched within the model's support)
    from tomohet.methods.discovery import local_region

    det = detect(maps, null_splits(engine.names, engine.tomo_names, 3, 199), alpha=0.005,
                 radius=support_radius(consensus, found.small_box))
    scale = region_from(det)[2]
    mask = candidate_regions(det, scale, 1)[0]
    streamed = local_region(engine, consensus, noise, found.small_box, 3, alpha=0.005)
    assert streamed is not None
    torch.testing.assert_close(streamed[0], upsample_mask(mask, BOX), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(streamed[1], component_labels(
        gaussian_lowpass(maps, scale), mask, 2, engine.order, 3))
    parallel.spawn(as_rank, 2, (_discover_rank, tmp_path), timeout_s=120)
    two = np.load(tmp_path / "two.npz")
    np.testing.assert_array_equal(two["labels"], found.labels)
    np.testing.assert_array_equal(two["region_labels"], np.stack(found.region_labels))
    np.testing.assert_allclose(two["z"], found.z.numpy(), rtol=1e-5, atol=1e-5)
    # the consensus and noise behind the maps are float32 sums over batches (1e-7)
    assert float(two["threshold"]) == pytest.approx(found.threshold, rel=1e-5)
    assert float(two["p"]) == found.p_value and str(two["region"]) == found.region


@pytest.mark.parametrize("gram_max", [residual_scan.GRAM_MAX, 10])
def test_scan_fit_rows_use_only_those_maps(monkeypatch, gram_max):
    """features/labels with ``fit`` (the held-out test's k-means start): components and
    k-means from those rows only -- equal to the SVD and component_labels of that subset
    in memory; the other rows' maps do not change them; the others get label -1."""
    monkeypatch.setattr(residual_scan, "GRAM_MAX", gram_max)
    maps, splits, bump = _maps()
    mask = (bump / bump.max()).clamp(0, 1)
    fit = np.zeros(len(maps), dtype=bool)
    fit[np.random.default_rng(5).permutation(len(maps))[: len(maps) // 2]] = True
    rows = np.nonzero(fit)[0]
    order = np.random.default_rng(3).permutation(len(maps))
    with _scan(maps, splits) as scan:
        got = scan.features(0.75, mask, 2, fit=fit)[rows]
        labels = scan.labels(0.75, mask, 2, order, seed=4, fit=fit)
    ref = _svd_scores(maps[rows], 0.75, mask, 2)
    signs = np.sign((got * ref).sum(0))
    np.testing.assert_allclose(got * signs, ref, atol=1e-6 * np.abs(ref).max())
    sub_order = np.argsort(np.argsort(order)[rows], kind="stable")
    ref_labels = component_labels(gaussian_lowpass(maps[rows], 0.75), mask, 2, sub_order,
                                  seed=4)
    np.testing.assert_array_equal(labels[rows], ref_labels)
    assert np.all(labels[~fit] == -1)
    other = maps.clone()
    other[~torch.as_tensor(fit)] *= -3.0  # the held-out rows changed: nothing moves
    with _scan(other, splits) as scan:
        again = scan.labels(0.75, mask, 2, order, seed=4, fit=fit)
    np.testing.assert_array_equal(again, labels)

"""The comparison functions of benchmarks/gpu_check.py (CPU vs CUDA fits), on hand-built
cases: identical fits agree perfectly, relabelled/rotated ones too, unrelated ones not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tomohet.metrics import ari

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gc = _load("gpu_compare")


def _fits(seed: int = 0, n: int = 300, k: int = 3, d: int = 8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    maps = rng.standard_normal((k, d, d, d))
    return labels, maps


def test_identical_fits_agree_perfectly():
    labels, maps = _fits()
    pairs = gc.map_correlations(maps, maps.copy(), labels, labels.copy())
    assert [(p["class_a"], p["class_b"]) for p in pairs] == [(0, 0), (1, 1), (2, 2)]
    assert sum(p["particles"] for p in pairs) == len(labels)
    assert all(p["corr"] == pytest.approx(1.0, abs=1e-12) for p in pairs)
    assert ari(labels, labels) == 1.0


def test_permuted_labels_are_matched_to_their_maps():
    labels, maps = _fits(1)
    perm = np.array([2, 0, 1])  # class c of A is class perm[c] of B
    labels_b = perm[labels]
    maps_b = np.empty_like(maps)
    maps_b[perm] = maps
    pairs = gc.map_correlations(maps, maps_b, labels, labels_b)
    assert {p["class_a"]: p["class_b"] for p in pairs} == {0: 2, 1: 0, 2: 1}
    assert all(p["corr"] == pytest.approx(1.0, abs=1e-12) for p in pairs)
    assert ari(labels, labels_b) == pytest.approx(1.0)
    # a scaled and shifted map (another normalisation on the other device) still correlates 1
    pairs = gc.map_correlations(maps, 3.0 * maps_b + 2.0, labels, labels_b)
    assert all(p["corr"] == pytest.approx(1.0, abs=1e-12) for p in pairs)


def test_unrelated_fits_score_near_zero():
    labels, maps = _fits(2, n=2000, d=16)
    labels_b, maps_b = _fits(3, n=2000, d=16)
    pairs = gc.map_correlations(maps, maps_b, labels, labels_b)
    assert len(pairs) == 3
    assert all(abs(p["corr"]) < 0.1 for p in pairs)
    assert abs(ari(labels, labels_b)) < 0.02


def test_matching_follows_majority_and_skips_unclassified():
    a = np.array([0, 0, 0, 1, 1, 1, -1, 2])
    b = np.array([1, 1, 0, 0, 0, 1, 0, -1])
    # class 0 of A mostly in 1 of B, class 1 of A mostly in 0; A's class 2 and the
    # unclassified particles share nothing with a classified B particle
    assert gc.matched_classes(a, b) == [(0, 1, 2), (1, 0, 2)]
    with pytest.raises(ValueError, match="differ in N"):
        gc.matched_classes(a, b[:-1])
    with pytest.raises(ValueError, match="integer"):
        gc.matched_classes(a.astype(float), b)


def test_pearson_against_numpy():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(50), rng.standard_normal(50)
    y = y + 0.5 * x
    assert gc.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert gc.pearson(x, np.ones(50)) == 0.0


def _rotation(z: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((z, z)))
    return q


def test_latent_agreement_identical_rotated_and_unrelated():
    rng = np.random.default_rng(5)
    za = rng.standard_normal((1000, 4)) * [3.0, 1.0, 0.5, 0.2]
    for zb in (za.copy(), 2.5 * za @ _rotation(4, 6) + 7.0):
        assert gc.linear_map_correlation(za, zb) == pytest.approx(1.0, abs=1e-9)
        assert gc.procrustes_correlation(za, zb) == pytest.approx(1.0, abs=1e-9)
    # a general invertible linear map: the affine fit recovers it, Procrustes does not
    shear = za @ np.array([[1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1.0]])
    assert gc.linear_map_correlation(za, shear) == pytest.approx(1.0, abs=1e-9)
    assert gc.procrustes_correlation(za, shear) < 0.99
    unrelated = rng.standard_normal((1000, 4))
    # independent latents: R^2 of an affine fit ~ Z / N, so sqrt ~ 0.06
    assert gc.linear_map_correlation(za, unrelated) < 0.15
    assert gc.procrustes_correlation(za, unrelated) < 0.25
    # a latent collapsed to one axis in B scores low, whichever direction is fitted
    collapsed = np.column_stack([za[:, 0], np.zeros((1000, 3))])
    assert gc.linear_map_correlation(za, collapsed) < 0.95
    assert gc.linear_map_correlation(collapsed, za) == gc.linear_map_correlation(za, collapsed)


def test_latent_kmeans_labels_invariant_to_relabelling():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, 400)
    za = np.column_stack([truth * 6.0, np.zeros(400)]) + rng.standard_normal((400, 2))
    zb = za @ _rotation(2, 8)
    la, lb = gc.kmeans_labels(za, 2), gc.kmeans_labels(zb, 2)
    assert ari(la, lb) == pytest.approx(1.0)
    assert ari(truth, la) > 0.95
    noise = gc.kmeans_labels(rng.standard_normal((400, 2)), 2)
    assert abs(ari(truth, noise)) < 0.05


def test_latent_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        gc.linear_map_correlation(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="differ"):
        gc.procrustes_correlation(np.zeros((5, 2)), np.zeros((5, 3)))


def test_script_without_cuda_stops_with_a_message(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the refusal path is for machines without it")
    check = _load("gpu_check")
    assert check.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--cpu-only" in err
    assert not (tmp_path / "out").exists()

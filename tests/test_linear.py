"""Linear heterogeneity methods: subspace recovery, wedge artefacts, clustering, bench, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import blob_volume

from tomohet.data.particles import Optics, TiltSeriesParticles
from tomohet.data.sources import ArrayImageSource
from tomohet.methods.clustering import cluster_latent, suggest_k
from tomohet.methods.linear import PPCA2D, WMDPCA, CCMatrix, MultiScale
from tomohet.physics.ctf import ctf_2d, exposure_filter
from tomohet.physics.fourier import ft_to_image
from tomohet.physics.geometry import random_rotations, rot_y, tilt_matrix
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)

BOX, PX = 20, 8.0
MEAN_PTS = [(3, -2, 4), (-4, 4, -1), (0, 0, -5), (4, 3, 2), (-3, -4, 2)]


def linear_volumes(box: int = BOX) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean structure and two eigen-directions (a blob appearing, a blob moving)."""
    mu = blob_volume(box, MEAN_PTS, sigma=1.5)
    u1 = blob_volume(box, [(5, -4, -3)], sigma=1.5)
    u2 = blob_volume(box, [(-5, 2, 4)], sigma=1.5) - blob_volume(box, [(-3, 4, 4)], sigma=1.5)
    return mu, torch.stack([u1, u2])


def make_linear_set(z: np.ndarray, mu: torch.Tensor, u: torch.Tensor,
                    rotations: torch.Tensor, n_tilts: int = 15, snr: float = 0.0,
                    seed: int = 0) -> TiltSeriesParticles:
    """Tilt series of ``mu + z @ u`` (projection is linear: slice each basis volume once)."""
    n, box = len(z), mu.shape[-1]
    g = torch.Generator().manual_seed(seed)
    tilts = torch.linspace(-60, 60, n_tilts)
    dose = torch.zeros(n_tilts)
    dose[torch.argsort(tilts.abs())] = torch.arange(n_tilts, dtype=torch.float32) * 3.0
    p_tilt = tilt_matrix(tilts)
    full = p_tilt[None] @ rotations[:, None]
    basis = VolumeProjector(torch.cat([mu[None], u])).slices(full)  # (K+1, N, T, D, Dh)
    zt = torch.cat([torch.ones(n, 1), torch.as_tensor(z, dtype=torch.float32)], 1)
    slices = torch.einsum("nk,kntyx->ntyx", zt.to(basis.dtype), basis)
    du = torch.full((n, n_tilts), 15000.0) + torch.rand(n, 1, generator=g) * 10000
    optics = Optics(PX, box)
    ctf = ctf_2d(du, du, torch.zeros(n, n_tilts), box, PX, optics.ctf_params)
    expo = exposure_filter(dose.expand(n, n_tilts), box, PX)
    img = ft_to_image(slices * ctf * expo, box)
    if snr > 0:
        sigma = (img[:, n_tilts // 2].var() / snr).sqrt()
        img = img + torch.randn(img.shape, generator=g) * sigma
    nt = n_tilts
    rep = lambda a: np.repeat(np.asarray(a, dtype=float)[None], n, 0)  # noqa: E731
    return TiltSeriesParticles(
        names=[f"p{i}" for i in range(n)], tomo_names=["t0"] * n,
        position_A=np.zeros((n, 3)), rotation=rotations.double().numpy(),
        tilt_rotation=rep(p_tilt.double().numpy()), tilt_deg=rep(tilts.numpy()),
        dose_e_per_A2=rep(dose.numpy()), defocus_u_A=du.double().numpy(),
        defocus_v_A=du.double().numpy(), defocus_angle_deg=np.zeros((n, nt)),
        ctf_scale=np.ones((n, nt)), shift_A=np.zeros((n, nt, 2)),
        visible=np.ones((n, nt), dtype=bool),
        image_index=np.arange(n * nt).reshape(n, nt),
        images=ArrayImageSource(img.reshape(n * nt, box, box).numpy()), optics=optics,
        meta={"format": "relion5"},
    )


def principal_angles_deg(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Principal angles between the row spaces of a (K, P) and b (L, P)."""
    qa = torch.linalg.qr(a.double().T).Q
    qb = torch.linalg.qr(b.double().T).Q
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return np.degrees(np.arccos(s.numpy()))


@pytest.fixture(scope="module")
def linear_data():
    mu, u = linear_volumes()
    n = 240
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 2)) * np.array([0.6, 0.4])
    rot = random_rotations(n, torch.Generator().manual_seed(1))
    return make_linear_set(z, mu, u, rot), z, mu, u


def _feature_space():
    from tomohet.methods.linear.common import load_mask
    from tomohet.methods.linear.features import FeatureSpec

    mask = load_mask(None, BOX, PX, None, torch.device("cpu"))
    # the methods' default low-pass (5 px); eigenvolumes carry nothing past it
    return FeatureSpec.build(BOX, PX, 5 * PX, None, mask, "cpu")


def _assert_linear_coords(z_fit: np.ndarray, z_true: np.ndarray, tol: float = 0.05) -> None:
    x = np.c_[z_true, np.ones(len(z_true))]
    resid = z_fit - x @ np.linalg.lstsq(x, z_fit, rcond=None)[0]
    assert (resid.var(0) / z_fit.var(0)).max() < tol


@pytest.mark.parametrize("cls", [WMDPCA, CCMatrix, MultiScale])
def test_subspace_recovered_noise_free(cls, linear_data):
    particles, z, _, u = linear_data
    params = {"components_per_scale": 2} if cls is MultiScale else {"n_components": 2}
    if cls is not CCMatrix:  # the kernel over the whole sphere (the default focuses)
        params["mask"] = "sphere"
    m = cls(**params, cluster=None, progress=False, random_state=0).fit(particles)
    fs = _feature_space()
    # multiscale: one pair per scale, all spanning the same space: U must lie in the span
    angles = principal_angles_deg(fs.of_volumes(m.eigenvolumes_), fs.of_volumes(u))
    assert angles.max() < 5.0, angles
    if cls is WMDPCA:  # after the wedge refinement the coordinates are linear in the truth
        _assert_linear_coords(m.transform(), z)
        assert m.explained_variance_ratio_[0] > m.explained_variance_ratio_[1] > 0


def test_ppca2d_subspace_noise_free(linear_data):
    particles, z, _, u = linear_data
    sub = particles.subset(np.arange(120))
    # noise-free data: (almost) no regularisation
    m = PPCA2D(n_components=2, n_iter=8, ridge=1e-4, focus_mask="none", cluster=None,
               progress=False, random_state=0)
    m.fit(sub)
    fs = _feature_space()
    angles = principal_angles_deg(fs.of_volumes(m.eigenvolumes_), fs.of_volumes(u))
    assert angles.max() < 5.0, angles
    _assert_linear_coords(m.transform(), z[:120])
    assert len(m.history_) == 8 and np.isfinite(m.history_[-1]["log_likelihood"])


def _wedge_r2(latent: np.ndarray, phi: np.ndarray) -> float:
    """R^2 of the first coordinate against the wedge orientation (cos 2phi, sin 2phi)."""
    x = np.c_[np.cos(2 * phi), np.sin(2 * phi), np.ones(len(phi))]
    y = latent[:, 0]
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return 1 - resid.var() / y.var()


def test_wmd_removes_missing_wedge_artefact():
    """Homogeneous set, particles rotated about the tilt axis only: the wedge's direction in
    the reference frame is one angle phi. Plain PCA's first component follows it, WMD's not."""
    mu, u = linear_volumes()
    n = 160
    rng = np.random.default_rng(3)
    phi = rng.uniform(0, np.pi, n)
    rot = rot_y(torch.as_tensor(np.degrees(phi), dtype=torch.float32))
    particles = make_linear_set(np.zeros((n, 2)), mu, u, rot, n_tilts=11, snr=2.0, seed=4)
    common = {"n_components": 2, "cluster": None, "progress": False, "random_state": 0,
              "mask": "sphere"}
    plain = WMDPCA(subtract_average=False, **common).fit(particles)
    wmd = WMDPCA(n_refine=0, **common).fit(particles)
    assert _wedge_r2(plain.transform(), phi) > 0.8
    assert _wedge_r2(wmd.transform(), phi) < 0.2


def test_clustering_and_bic():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [6, 0], [0, 6]])
    lab = rng.integers(0, 3, 600)
    z = centres[lab] + rng.normal(size=(600, 2))
    k, bic = suggest_k(z, max_clusters=6, seed=0)
    assert k == 3 and len(bic) == 6
    from sklearn.metrics import adjusted_rand_score

    for method in ("kmeans", "gmm", "ward"):
        res = cluster_latent(z, method=method, n_clusters=None, seed=0, ward_max=300)
        assert res.n_clusters == 3
        assert adjusted_rand_score(lab, res.labels) > 0.9
        assert np.bincount(res.labels)[0] == np.bincount(res.labels).max()


def test_ccmatrix_refuses_large_sets(linear_data):
    particles = linear_data[0]
    with pytest.raises(MemoryError, match="wmdpca"):
        CCMatrix(max_memory_GB=1e-4, progress=False).fit(particles)


def test_subtomogram_input_matches_tilts(linear_data, tmp_path):
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    particles, z = linear_data[0].subset(np.arange(100)), linear_data[1][:100]
    sub = subtomograms_from_tilts(particles, tmp_path / "cache", progress=False)
    common = {"n_components": 2, "cluster": None, "progress": False, "random_state": 0,
              "mask": "sphere"}
    a = WMDPCA(**common).fit(particles).transform()
    b = WMDPCA(**common).fit(sub).transform()
    _assert_linear_coords(b, z, tol=0.08)
    _assert_linear_coords(a, b, tol=0.08)


def test_cli_embed_outputs(linear_data, tmp_path):
    from tomohet.cli.main import main
    from tomohet.io import write_particles

    particles = linear_data[0].subset(np.arange(80))
    star = tmp_path / "data" / "particles.star"
    paths = write_particles(particles, star, fmt="relion5")
    data = next((p for p in paths if "optimisation_set" in p.name), paths[0])
    out = tmp_path / "wmd"
    rc = main(["embed", "wmdpca", str(data), "--out", str(out), "--components", "2",
               "--cluster", "kmeans", "--k", "2", "--no-progress"])
    assert rc == 0
    for name in ("latent.csv", "assignments.csv", "config.json", "mean.mrc",
                 "eigenvolume_01.mrc", "explained_variance.png",
                 "component_01/frame_00_-2.0sd.mrc", "component_02/frame_04_+2.0sd.mrc"):
        assert (out / name).exists(), name
    import pandas as pd

    lat = pd.read_csv(out / "latent.csv")
    assert list(lat.columns) == ["particle", "z0", "z1"] and len(lat) == 80


def test_bench_registration(tmp_path, monkeypatch):
    from tomohet.bench.datasets import from_simulated
    from tomohet.bench.runner import run_bench
    from tomohet.methods import REGISTRY, load_all
    from tomohet.sim import get_preset, simulate

    load_all()
    names = ["wmdpca", "ccmatrix", "multiscale", "ppca2d"]
    assert all(REGISTRY[n].kind == "continuous" for n in names)
    sim = simulate(get_preset("demo", n_particles=48, box=16, n_tilts=9), seed=0)
    ds = from_simulated(sim, "demo")
    for cls in (REGISTRY[n] for n in names):  # quicker runs, restored after the test
        quick = {"batch_size": 48, **({"n_iter": 2} if cls is PPCA2D else {})}
        monkeypatch.setattr(cls, "bench_params", dict(cls.bench_params, **quick))
    df = run_bench([ds], tmp_path, methods=names, oracle=False, report=False, log=None)
    assert (df["status"] == "ok").all(), df[["method", "error"]]
    assert set(df["method"]) == set(names)
    assert df["ari"].notna().all() and df["fsc_auc"].notna().all()


def test_streaming_randomized_svd_matches_exact(tmp_path):
    from tomohet.methods.linear.features import FeatureStore, randomized_svd

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 3)) * [5, 3, 2]) @ rng.normal(size=(3, 80))
    x = x + 0.01 * rng.normal(size=x.shape) + 7.0
    store = FeatureStore(500, 80, max_memory_GB=1e-6, folder=str(tmp_path))  # memory-mapped
    assert store.path is not None
    store.write(np.arange(500), torch.as_tensor(x, dtype=torch.float32))
    res = randomized_svd(store, 3, torch.Generator().manual_seed(0), chunk=128)
    exact = np.linalg.svd(x - x.mean(0), compute_uv=False)[:3]
    np.testing.assert_allclose(res.singular_values.numpy(), exact, rtol=1e-3)
    assert res.explained_ratio.sum() > 0.99
    store.close()
    assert not store.path.exists()

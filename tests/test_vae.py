"""Tilt-series VAE (``vae`` / ``vae-et``): training, resume, decoder, CLI and bench hook."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from synthetic import BASE, blob_volume, make_tilt_set

from tomohet.methods.vae import TiltVAEETMethod, TiltVAEMethod
from tomohet.methods.vae.model import TiltVAE
from tomohet.methods.vae.reference import radial_envelope
from tomohet.physics.fourier import freq_grid_3d, volume_to_ft
from tomohet.physics.fsc import fsc

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*latent collapse:RuntimeWarning")

SMALL = {"zdim": 2, "enc_dim": 32, "dec_dim": 32, "dec_layers": 2, "batch_size": 16,
         "progress": False, "random_state": 3}


@pytest.fixture(scope="module")
def tiny():
    return make_tilt_set(n=160, box=24, n_tilts=11, snr=1.0, seed=2)


def _ari_of_latents(z: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    pred = KMeans(2, n_init=10, random_state=0).fit_predict(z)
    return float(adjusted_rand_score(labels, pred))


@pytest.fixture(scope="module")
def tiny_fit(tiny):
    particles, _, _ = tiny
    return TiltVAEMethod(n_epochs=2, n_tilts=11, beta_warmup=0, **SMALL).fit(particles)


def test_tiny_run_loss_decreases_and_latent_separates_states(tiny, tiny_fit):
    particles, labels, _ = tiny
    m = tiny_fit
    assert _ari_of_latents(m.transform(), labels) > 0.6
    h = m.history_
    assert len(h) == 2 and h[1]["loss"] < h[0]["loss"]
    assert h[1]["nll"] < h[0]["nll"]
    z = m.transform()
    assert z.shape == (160, 2) and np.isfinite(z).all()
    assert set(h[1]) >= {"drift", "active_dims", "kl_per_particle", "seconds"}
    vols = m.particle_volumes(np.array([0, 1]))
    assert vols.shape == (2, 24, 24, 24) and torch.isfinite(vols).all()


def _premultiplied(particles):
    """The same images as CTF-premultiplied stacks: X' = CTF x X (noise included)."""
    from tomohet.data.sources import ArrayImageSource
    from tomohet.physics.ctf import ctf_2d
    from tomohet.physics.fourier import ft_to_image, image_to_ft

    o, n, t = particles.optics, particles.n_particles, particles.n_tilts
    ctf = ctf_2d(torch.as_tensor(particles.defocus_u_A), torch.as_tensor(particles.defocus_v_A),
                 torch.as_tensor(particles.defocus_angle_deg), o.box, o.pixel_size_A,
                 o.ctf_params).float()
    imgs = particles.images.read(np.arange(n * t)).reshape(n, t, o.box, o.box)
    pre = ft_to_image(image_to_ft(imgs) * ctf, o.box).reshape(n * t, o.box, o.box)
    return dataclasses.replace(particles, images=ArrayImageSource(pre.numpy()),
                               optics=dataclasses.replace(o, ctf_premultiplied=True))


def test_premultiplied_reference_matches_plain(tiny):
    """Consensus and noise power from premultiplied stacks equal those of the same data
    unpremultiplied (residuals scaled by 1/CTF^2, CTF^2 weights). Ignoring the
    premultiplication gave a CTF^2-scaled noise power (5.3 instead of 282 at shell 1) and
    a CTF^4-weighted map."""
    from tomohet.data.keys import half_sets
    from tomohet.methods.vae.data import build_cache
    from tomohet.methods.vae.reference import consensus_volume, noise_power
    from tomohet.physics.projection import VolumeProjector

    particles, _, _ = tiny
    sub = particles.subset(np.arange(96))
    dev = torch.device("cpu")
    out = []
    for p in (sub, _premultiplied(sub)):
        cache = build_cache(p, np.arange(p.n_particles), p.visible)
        vol, _curve = consensus_volume(cache, dev, half_sets(p.names, p.tomo_names))
        out.append((vol, noise_power(cache, VolumeProjector(vol), dev)))
    (v_plain, n_plain), (v_pre, n_pre) = out
    box = v_plain.shape[-1]
    assert float(fsc(v_pre, v_plain)[1 : box // 2].min()) > 0.999
    rel = ((n_pre - n_plain).abs() / n_plain)[: box // 2]
    assert float(rel.max()) < 0.02, rel


def test_premultiplied_run_recovers_states(tiny, tiny_fit):
    particles, labels, _ = tiny
    m = TiltVAEMethod(n_epochs=2, n_tilts=11, beta_warmup=0, **SMALL).fit(
        _premultiplied(particles))
    z_pre, z_plain = m.transform(), tiny_fit.transform()
    assert _ari_of_latents(z_pre, labels) > 0.6
    # the same likelihood as the plain data: the same latents up to float rounding
    assert np.abs(z_pre - z_plain).max() < 0.05 * np.abs(z_plain).max()


def test_checkpoint_resume_bit_identical(tmp_path, tiny):
    particles, _, _ = tiny
    sub = particles.subset(np.arange(64))
    kw = dict(SMALL, n_tilts=5)
    straight = TiltVAEMethod(n_epochs=2, checkpoint_dir=str(tmp_path / "a"), **kw).fit(sub)
    TiltVAEMethod(n_epochs=1, checkpoint_dir=str(tmp_path / "b"), **kw).fit(sub)
    resumed = TiltVAEMethod(n_epochs=2, checkpoint_dir=str(tmp_path / "b"), resume=True,
                            **kw).fit(sub)
    assert np.array_equal(straight.transform(), resumed.transform())
    sa, sb = straight.model_.state_dict(), resumed.model_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["loss"] for h in straight.history_] == [h["loss"] for h in resumed.history_]
    ck = torch.load(tmp_path / "b" / "checkpoints" / "epoch_002.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["mu"].shape == (64, 2)


def test_decoder_reproduces_known_volume():
    """With z fixed, the coordinate decoder alone (no consensus) fits a known map."""
    box = 16
    vol = blob_volume(box, [(p[0] // 2, p[1] // 2, p[2] // 2) for p in BASE], sigma=1.5)
    cfg = {"box": box, "zdim": 1, "encoder": "none", "enc_dim": 8, "enc_layers": 1,
           "enc_radius": 3, "dec_dim": 96, "dec_layers": 3, "pe": "gaussian",
           "feat_sigma": 0.25, "use_consensus": False, "seed": 0}
    model = TiltVAE(cfg)
    model.decoder.envelope.copy_(radial_envelope(vol))
    k = freq_grid_3d(box).reshape(-1, 3)
    inside = k.norm(dim=-1) <= 0.5
    target = volume_to_ft(vol).reshape(-1)[inside]
    kin = k[inside]
    z = torch.zeros((1, 1))
    opt = torch.optim.Adam(model.decoder.parameters(), lr=3e-3)
    scale = model.decoder.env(kin)
    for _ in range(300):
        pred = model.decoder(kin, z)
        loss = ((pred - target).abs() ** 2 / scale**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model.volumes(z, mask=False)[0]
    corr = float(torch.corrcoef(torch.stack([out.flatten(), vol.flatten()]))[0, 1])
    curve = fsc(out, vol)
    assert corr > 0.99
    assert float(curve[1 : box // 2 - 1].min()) > 0.95  # up to 3/4 Nyquist


def test_et_mode_skips_particles_lacking_tilts(tiny):
    particles, _, _ = tiny
    sub = particles.subset(np.arange(48))
    vis = sub.visible.copy()
    vis[:6, 2:] = False  # 2 visible tilts left: fewer than n_tilts = 4
    sub = sub.with_visible(vis)
    with pytest.warns(RuntimeWarning, match="6 of 48 particles"):
        m = TiltVAEETMethod(n_epochs=1, n_tilts=4, **SMALL).fit(sub)
    z = m.transform()
    assert np.isnan(z[:6]).all() and np.isfinite(z[6:]).all()
    assert list(m.skipped_) == list(range(6))
    with pytest.warns(RuntimeWarning):
        m2 = TiltVAEETMethod(n_epochs=1, n_tilts=4, encode_skipped=True, **SMALL).fit(sub)
    assert np.isfinite(m2.transform()).all()


def test_cli_train_resume_and_analyze(tmp_path, tiny):
    from tomohet.cli.main import main

    sim = tmp_path / "sim"
    assert main(["simulate", "--preset", "demo", "--n-particles", "40", "--box", "16",
                 "--formats", "relion5", "--out", str(sim), "--no-progress"]) == 0
    star = next(sim.glob("*optimisation_set.star"))
    out = tmp_path / "run"
    args = ["--threads", "1", "train", "vae", str(star), "--zdim", "2", "--out", str(out),
            "--dec-dim", "16", "--enc-dim", "16", "--n-tilts", "4", "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    for name in ("latent.csv", "weights.pt", "convergence.png", "particles.star",
                 "checkpoints/epoch_002.pt"):
        assert (out / name).exists(), name
    assert main(["--threads", "1", "analyze", str(out), "--k", "2", "--n-points", "3",
                 "--no-umap", "--path", "0", "1", "--particles", "2"]) == 0
    ana = out / "analysis"
    for name in ("index.html", "assignments.csv", "latent.csv", "kmeans/kmeans_centre_001.mrc",
                 "gmm/gmm_centre_002.mrc", "pc1/pc1_003.mrc", "path/path_001.mrc",
                 "particles/particle_001.mrc"):
        assert (ana / name).exists(), name
    assert (ana / "index.html").read_text().count("data:image/png;base64") >= 5


def test_bench_registration(tmp_path, monkeypatch):
    from tomohet.bench.presets import simulate_presets
    from tomohet.bench.runner import run_bench
    from tomohet.methods import REGISTRY, load_all

    load_all()
    assert {"vae", "vae-et"} <= set(REGISTRY)
    quick = {"zdim": 2, "n_epochs": 1, "n_tilts": 4, "dec_dim": 16, "enc_dim": 16}
    monkeypatch.setattr(TiltVAEMethod, "bench_params", quick)
    (full,) = simulate_presets(["demo"], seed=0, quick=True)
    ds = [dataclasses.replace(full, particles=full.particles.subset(np.arange(40)),
                              truth=full.truth.iloc[:40].reset_index(drop=True))]
    df = run_bench(ds, tmp_path, methods="vae", oracle=False, report=False, log=None)
    row = df[df.method == "vae"].iloc[0]
    assert row["status"] == "ok", row["error"]
    assert np.isfinite(row["fsc_auc"]) and np.isfinite(row["ari"])


def test_latent_analysis_and_collapse_diagnostics():
    from tomohet.analysis import latent as L
    from tomohet.methods.vae.diagnostics import collapse_warning, latent_diagnostics

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.3, (30, 3)), rng.normal(3, 0.3, (30, 3))])
    z[5] = np.nan  # a skipped particle
    p = L.pca(z, 2)
    assert np.isnan(p.coords[5]).all() and p.explained[0] > 0.9
    for cl in (L.kmeans_clusters(z, 2, 0), L.gmm_clusters(z, 2, 0)):
        assert cl.labels[5] == -1
        assert len(set(cl.labels[:30]) - {-1}) == 1 and cl.labels[40] != cl.labels[0]
        assert np.isfinite(z[cl.on_data]).all()
    traj = L.pc_trajectory(p, 0, 5)
    assert traj.shape == (5, 3) and np.sign(traj[0, 0]) != np.sign(traj[-1, 0])
    assert np.allclose(L.latent_path(z, 0, 40, 3)[1], (z[0] + z[40]) / 2)
    emb, kind = L.umap_embedding(z[:, :2])
    assert kind == "latent" and np.isnan(emb[5]).all()
    mu = torch.zeros((50, 2))
    flat = latent_diagnostics(mu, torch.zeros((50, 2)), None)
    assert flat["active_dims"] == 0 and collapse_warning(flat) is not None
    good = latent_diagnostics(torch.randn(50, 2), torch.full((50, 2), -3.0), mu)
    assert good["active_dims"] == 2 and collapse_warning(good) is None

"""vae3d: OPUS-TOMO style 3D convolutional VAE, compared through each particle's wedge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tomohet.data.particles import Optics, SubtomogramParticles
from tomohet.data.sources import ArrayVolumeSource, DataError
from tomohet.methods.vae3d import Vae3DMethod
from tomohet.methods.vae3d import data as D
from tomohet.methods.vae3d.model import pad_volume, particle_nll
from tomohet.methods.vae3d.train import loss_of
from tomohet.physics.fourier import (
    ft_to_volume,
    hermitian_weights_3d,
    radial_shell_index,
    volume_to_ft,
)


@pytest.fixture(scope="module")
def continuous():
    """ADK open <-> closed, high SNR, box 24."""
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("continuous", n_particles=80, n_tomograms=2, box=24, n_tilts=21,
                     snr=10.0)
    return simulate(cfg, seed=1)


def _fit(particles, **kw):
    params = dict(zdim=2, n_epochs=15, batch_size=4, lr=1e-3, progress=False)
    params.update(kw)
    return Vae3DMethod(**params).fit(particles)


# ------------------------------------------------------------------ kernels
def test_nll_equals_a_direct_full_grid_sum():
    """The rfft-layout NLL (Hermitian multiplicities) equals the same sum over the full
    FFT grid, with the noise per shell looked up by hand."""
    g = torch.Generator().manual_seed(0)
    s = 8
    v = torch.randn(2, s, s, s, generator=g)
    x = torch.randn(2, s, s, s, generator=g)
    w_full = torch.rand(2, s, s, s, generator=g) + 0.1
    mirrored = torch.flip(torch.roll(w_full, (-1, -1, -1), (1, 2, 3)), (1, 2, 3))  # W(-q)
    w_full = 0.5 * (w_full + mirrored)  # W(-q) = W(q), as for any real data's weight
    noise = torch.linspace(1.0, 2.0, s // 2 + 1)
    v_full = torch.fft.fftn(torch.fft.ifftshift(v, dim=(1, 2, 3)), dim=(1, 2, 3))
    x_full = torch.fft.fftn(torch.fft.ifftshift(x, dim=(1, 2, 3)), dim=(1, 2, 3))
    y_full = w_full * x_full
    k = torch.fft.fftfreq(s)
    kz, ky, kx = torch.meshgrid(k, k, k, indexing="ij")
    shell_full = torch.round(torch.sqrt(kx**2 + ky**2 + kz**2) * s).long()
    keep = shell_full < s // 2
    direct = 0.5 * (((y_full - w_full * v_full).abs() ** 2 / (w_full * noise[
        shell_full.clamp_max(s // 2)])) * keep).flatten(1).sum(1)
    h = s // 2 + 1
    y, w, v_ft = y_full[..., :h], w_full[..., :h], volume_to_ft(v)
    mask = D.loss_mask(w, 0.0)
    ours = particle_nll(v_ft, y, w, mask, noise, radial_shell_index(s, 3))
    torch.testing.assert_close(ours, direct.float(), rtol=1e-4, atol=1e-3)
    assert hermitian_weights_3d(s).sum() == s**3


def test_weight_volume_is_the_centred_full_transform():
    """The encoder's weight channel equals the full FFT of a real volume's power,
    centred: built from the rfft half by Friedel symmetry."""
    g = torch.Generator().manual_seed(1)
    s = 10
    vol = torch.randn(s, s, s, generator=g)
    full = torch.fft.fftn(vol).abs() ** 2
    half = full[..., : s // 2 + 1]
    torch.testing.assert_close(D.weight_volume(half), torch.fft.fftshift(full))


def test_pad_volume_inverts_a_fourier_crop():
    from tomohet.methods.linear.reference import crop_rfft

    g = torch.Generator().manual_seed(2)
    small = torch.randn(1, 8, 8, 8, generator=g)
    ft = volume_to_ft(small)
    ft[..., 4, :, :] = 0  # Nyquist planes have no unique place in the larger grid
    ft[..., :, 4, :] = 0
    ft[..., :, :, 4] = 0
    small = ft_to_volume(ft, 8)
    big = pad_volume(small, 16)
    back = ft_to_volume(crop_rfft(volume_to_ft(big), 16, 8), 8)
    torch.testing.assert_close(back, small, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the wedge
def _wedge_set(n=6, d=16, seed=0):
    """Subtomograms (identity orientation) with a +-60 degree missing wedge about y in
    their weights, CTF-premultiplied (RELION 4 style)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(d)
    kz, ky, kx = np.meshgrid(k, k, k[: d // 2 + 1], indexing="ij")
    seen = np.abs(kz) <= np.tan(np.deg2rad(60)) * np.abs(kx) + 1e-9  # beams within 60 deg
    weights = np.broadcast_to(seen.astype(np.float32) * rng.uniform(0.5, 1.5, size=(n, 1, 1, 1)),
                              (n, d, d, d // 2 + 1)).astype(np.float32)
    vols = rng.normal(size=(n, d, d, d)).astype(np.float32)
    return vols, weights, ~seen


def _subtomos(vols, weights, d=16):
    n = len(vols)
    return SubtomogramParticles(
        names=[f"p{i}" for i in range(n)], tomo_names=["t1"] * n,
        position_A=np.zeros((n, 3)), rotation=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
        volumes=ArrayVolumeSource(vols), weights=ArrayVolumeSource(weights),
        optics=Optics(4.0, d, ctf_premultiplied=True), weight_layout="rfft")


def test_loss_and_latents_ignore_the_missing_wedge(tmp_path):
    """Changing every subtomogram's Fourier samples inside its missing wedge changes
    neither the trained latents nor the per-particle loss; changing samples outside the
    wedge does (so the check can fail)."""
    vols, weights, wedge = _wedge_set()
    base = _subtomos(vols, weights)
    ft = torch.fft.rfftn(torch.fft.ifftshift(torch.as_tensor(vols), dim=(1, 2, 3)),
                         dim=(1, 2, 3))
    g = torch.Generator().manual_seed(9)
    junk = 50 * torch.randn(ft.shape, generator=g, dtype=torch.complex64)

    def changed(where):
        f = torch.where(torch.as_tensor(where)[None], ft + junk, ft)
        v = torch.fft.fftshift(torch.fft.irfftn(f, s=(16,) * 3, dim=(1, 2, 3)), dim=(1, 2, 3))
        return _subtomos(v.numpy().astype(np.float32), weights)

    m = _fit(base, n_epochs=2, batch_size=3)
    dev = torch.device("cpu")
    floor = float(m.model_.config["floor"])

    def loss(particles):
        return loss_of(m.model_, D.build_data(particles, None, 4), floor, dev)

    ref = loss(base)
    in_wedge = changed(wedge)
    np.testing.assert_allclose(loss(in_wedge), ref, rtol=1e-4)
    m2 = _fit(in_wedge, n_epochs=2, batch_size=3)
    np.testing.assert_allclose(m2.transform(), m.transform(), rtol=1e-3, atol=1e-4)
    outside = changed(~wedge)
    assert np.abs(loss(outside) - ref).max() > 1e-2 * np.abs(ref).max()


def test_subtomograms_without_weights_are_refused():
    vols, _, _ = _wedge_set(n=3)
    p = _subtomos(vols, np.ones((3, 16, 16, 9), np.float32))
    p = SubtomogramParticles(names=p.names, tomo_names=p.tomo_names, position_A=p.position_A,
                             rotation=p.rotation, volumes=p.volumes, weights=None,
                             optics=p.optics, meta={"source": "sub.star"})
    with pytest.raises(DataError, match="rlnCtfImage"):
        Vae3DMethod(progress=False).fit(p)


# ------------------------------------------------------------------ recovery, order, resume
def test_recovers_the_continuous_coordinate_at_high_snr(continuous):
    m = _fit(continuous.particles)
    c0 = continuous.truth["c0"].to_numpy()
    z = m.transform()
    best = max(abs(spearmanr(z[:, i], c0).statistic) for i in range(z.shape[1]))
    print(f"vae3d |Spearman| {best:.3f}")
    assert best > 0.9, best


def test_row_permutation_gives_the_same_latents_per_particle(continuous):
    p = continuous.particles.subset(np.arange(40))
    perm = np.random.default_rng(4).permutation(p.n_particles)
    a = _fit(p, n_epochs=2).transform()
    b = _fit(p.subset(perm), n_epochs=2).transform()
    np.testing.assert_allclose(b, a[perm], rtol=1e-3, atol=1e-4)


def test_resume_equals_an_uninterrupted_run(continuous, tmp_path):
    p = continuous.particles.subset(np.arange(30))
    straight = _fit(p, n_epochs=3, checkpoint_dir=str(tmp_path / "a"))
    _fit(p, n_epochs=2, checkpoint_dir=str(tmp_path / "b"))
    resumed = _fit(p, n_epochs=3, checkpoint_dir=str(tmp_path / "b"), resume=True)
    np.testing.assert_allclose(resumed.transform(), straight.transform(), rtol=1e-5,
                               atol=1e-6)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    ck = torch.load(tmp_path / "b" / "checkpoints" / "epoch_003.pt", weights_only=True)
    assert ck["config"]["arch"] == "vae3d"


def test_save_writes_what_analyze_reads(continuous, tmp_path):
    from tomohet.analysis.volumes import load_run

    p = continuous.particles.subset(np.arange(20))
    m = _fit(p, n_epochs=1)
    m.save(tmp_path, p)
    for f in ("latent.csv", "latent_logvar.csv", "weights.pt", "history.json",
              "consensus.mrc", "summary.json"):
        assert (tmp_path / f).exists(), f
    model, info, table = load_run(tmp_path)
    assert list(table["particle"]) == list(p.names)
    vols = model.volumes(torch.zeros(2, 2))
    assert vols.shape == (2, 24, 24, 24)
    torch.testing.assert_close(vols[0], m.volumes_at(np.zeros((1, 2)))[0])


def test_cli_train_vae3d_on_subtomograms_resume_and_analyze(tmp_path):
    """`tomohet train vae3d` on RELION-style subtomograms with 3D CTF volumes, resumed,
    then `tomohet analyze` on its folder."""
    import json

    from tomohet.cli.main import main

    sim = tmp_path / "sim"
    assert main(["simulate", "--preset", "continuous", "--n-particles", "16", "--box", "16",
                 "--formats", "relion5", "--subtomograms", "--out", str(sim),
                 "--no-progress"]) == 0
    star = sim / "subtomograms" / "particles.star"
    out = tmp_path / "run"
    args = ["--threads", "1", "train", "vae3d", str(star), "--zdim", "2", "--out", str(out),
            "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    assert (out / "config.json").exists() and (out / "checkpoints/epoch_002.pt").exists()
    assert main(["--threads", "1", "analyze", str(out), "--k", "2", "--n-points", "3",
                 "--no-umap"]) == 0
    for name in ("index.html", "latent.csv", "pc1/pc1_003.mrc"):
        assert (out / "analysis" / name).exists(), name

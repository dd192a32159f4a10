"""Simulator: image formation against analytic results, noise, acquisition, truth, I/O."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tomohet.physics.ctf import electron_wavelength_A, exposure_filter
from tomohet.physics.fourier import freq_grid_2d, image_to_ft
from tomohet.physics.geometry import tilt_matrix
from tomohet.physics.projection import project_volumes
from tomohet.sim import SimulationConfig, TiltScheme, VolumeStates, get_preset, simulate
from tomohet.sim.acquisition import dose_symmetric_order, measured_snr

torch.set_num_threads(1)

POINT = [24.0, -16.0, 12.0]  # off-centre so that rotation conventions matter


def point_config(**kw) -> SimulationConfig:
    base = dict(name="point", n_particles=12, box=32, pixel_size_A=4.0,
                structure={"kind": "points", "points_A": [POINT], "sigma_A": 5.0},
                tilt=TiltScheme(-60.0, 60.0, 30.0, 2, 3.0), n_tomograms=1,
                tomogram_size_A=(3000.0, 3000.0, 600.0), ctf=False, snr=1.0)
    base.update(kw)
    return SimulationConfig(**base)


def analytic_projection(center_A: np.ndarray, sigma_A: float, box: int, px: float) -> np.ndarray:
    """Continuous 2D Gaussian of a 3D Gaussian blob projected along z, at pixel centres."""
    c = (np.arange(box) - box // 2) * px
    y, x = np.meshgrid(c, c, indexing="ij")
    r2 = (x - center_A[0]) ** 2 + (y - center_A[1]) ** 2
    return np.exp(-r2 / (2 * sigma_A**2))


def gaussian_volume(center_A, sigma_A: float, box: int, px: float) -> torch.Tensor:
    c = (torch.arange(box, dtype=torch.float64) - box // 2) * px
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r2 = (x - center_A[0]) ** 2 + (y - center_A[1]) ** 2 + (z - center_A[2]) ** 2
    return torch.exp(-r2 / (2 * sigma_A**2)).float()


def corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


# ----------------------------------------------------------------- tilt scheme and dose
def test_dose_symmetric_order_and_cumulative_dose():
    scheme = TiltScheme(-60.0, 60.0, 3.0, group_size=2, dose_per_tilt_e_per_A2=3.0)
    angles = scheme.angles_deg()
    assert len(angles) == 41
    order = angles[dose_symmetric_order(angles, 2)]
    assert order[:11].tolist() == [0, 3, -3, -6, 6, 9, -9, -12, 12, 15, -15]
    dose = scheme.pre_exposure_e_per_A2()
    # acquired k-th -> k * 3 e/A^2 before it; every value exactly once
    assert sorted(dose.tolist()) == [3.0 * k for k in range(41)]
    as_dict = dict(zip(angles.tolist(), dose.tolist(), strict=True))
    assert as_dict[0.0] == 0 and as_dict[3.0] == 3 and as_dict[-3.0] == 6
    assert as_dict[-6.0] == 9 and as_dict[6.0] == 12 and as_dict[60.0] == 120
    single = angles[dose_symmetric_order(angles, 1)]
    assert single[:5].tolist() == [0, 3, -3, 6, -6]
    lopsided = np.arange(-30.0, 61.0, 10.0)  # one side runs out first
    got = lopsided[dose_symmetric_order(lopsided, 2)]
    assert got.tolist() == [0, 10, -10, -20, 20, 30, -30, 40, 50, 60]


# ----------------------------------------------------------------- image formation
@pytest.mark.parametrize("route", ["atoms", "volume"])
def test_noise_free_images_match_analytic_projection(route):
    cfg = point_config(dose_weighting=False)
    sigma = 5.0
    model = None
    if route == "volume":  # Fourier-slice path through VolumeStates
        vol = gaussian_volume(POINT, sigma, cfg.box, cfg.pixel_size_A)
        model = VolumeStates(vol[None], [1.0], ["blob"], cfg.pixel_size_A)
    ds = simulate(cfg, seed=3, model=model)
    acq = ds.acquisition
    clean = ds.clean_images(np.arange(cfg.n_particles)).numpy()
    for n in range(cfg.n_particles):
        for t in range(clean.shape[1]):
            full = tilt_matrix(float(acq.tilt_deg[n, t])).double().numpy() @ acq.rotation[n]
            ref = analytic_projection(full @ np.array(POINT), sigma, cfg.box, cfg.pixel_size_A)
            assert corr(clean[n, t], ref) > 0.99, (n, t)
    # the stored noisy images are the clean ones plus noise
    idx = ds.particles.image_index[0, 2]
    assert corr(ds.particles.images.read([idx])[0], clean[0, 2]) > 0.5


def test_true_volume_is_what_was_imaged():
    """Projections of ``true_volume`` at the true pose equal the noise-free images."""
    cfg = get_preset("mixed", n_particles=8, box=24, ctf=False, dose_weighting=False,
                     n_tomograms=1)
    ds = simulate(cfg, seed=0)
    clean = ds.clean_images(np.arange(8)).numpy()
    acq = ds.acquisition
    for n in range(8):
        full = torch.as_tensor(acq.tilt_rotation[n] @ acq.rotation[n], dtype=torch.float32)
        proj = project_volumes(ds.true_volume(n), full)[0].numpy()
        assert corr(proj, clean[n]) > 0.995
    v = ds.true_volumes([0, 1])
    assert v.shape == (2, 24, 24, 24)
    assert torch.allclose(ds.volumes_at(acq.state[:2], acq.coords[:2]), v)


def test_exposure_filter_attenuation_at_known_frequency():
    common = dict(structure={"kind": "points", "points_A": [[0, 0, 0]], "sigma_A": 4.0},
                  n_particles=2)
    a = simulate(point_config(dose_weighting=True, **common), seed=1)
    b = simulate(point_config(dose_weighting=False, **common), seed=1)
    t = int(np.argmax(a.acquisition.dose_e_per_A2[0]))
    dose = float(a.acquisition.dose_e_per_A2[0, t])
    assert dose > 0
    fa = image_to_ft(a.clean_images([0], [t])[0, 0])
    fb = image_to_ft(b.clean_images([0], [t])[0, 0])
    k = freq_grid_2d(32)
    i, j = 0, 4  # kx = 4/32 cycles/px, ky = 0
    u = float(k[i, j].norm()) / 4.0  # 1/A
    expected = math.exp(-dose / (2 * (0.245 * u**-1.665 + 2.81)))
    got = float(fa[i, j].abs() / fb[i, j].abs())
    assert got == pytest.approx(expected, rel=1e-3)
    filt = exposure_filter(torch.tensor([dose]), 32, 4.0)[0, i, j]
    assert float(filt) == pytest.approx(expected, rel=1e-4)


def test_ctf_zeros_where_theory_puts_them():
    box, px, defocus_um = 96, 3.0, 2.0
    cfg = point_config(box=box, pixel_size_A=px, ctf=True, dose_weighting=False,
                       astigmatism_um=0.0, defocus_range_um=(defocus_um, defocus_um),
                       tomogram_size_A=(3000.0, 3000.0, 10.0), n_particles=1, min_distance_A=1.0,
                       structure={"kind": "points", "points_A": [[0, 0, 0]], "sigma_A": 2.0})
    ds = simulate(cfg, seed=0)
    t0 = int(np.argmin(np.abs(ds.acquisition.tilt_deg[0])))
    dz = float(ds.acquisition.defocus_u_A[0, t0])
    power = image_to_ft(ds.clean_images([0], [t0])[0, 0]).abs() ** 2
    shell = torch.round(freq_grid_2d(box).norm(dim=-1) * box).long()
    radial = torch.zeros(box).index_add_(0, shell.flatten(), power.flatten())
    radial /= torch.bincount(shell.flatten(), minlength=box).clamp_min(1)
    # theory: CTF = -sin(chi), chi = -pi lam dz u^2 + pi/2 Cs lam^3 u^4 - atan(Q0/sqrt(1-Q0^2))
    lam, cs = electron_wavelength_A(300.0), 2.7e7
    k3 = math.atan(0.07 / math.sqrt(1 - 0.07**2))
    u = np.linspace(1e-4, 0.5 / px, 20000)
    chi = -math.pi * lam * dz * u**2 + math.pi / 2 * cs * lam**3 * u**4 - k3
    zeros = u[np.nonzero(np.diff(np.sign(np.sin(chi))))[0]] * px * box  # in shells
    assert len(zeros) >= 4
    for i in range(3):  # the first three zeros, each between its neighbouring maxima
        s = int(round(zeros[i]))
        half = max(2, int((zeros[i + 1] - zeros[i]) / 2))
        window = radial[max(s - half, 1) : s + half + 1]
        assert int(torch.argmin(window)) + max(s - half, 1) in (s - 1, s, s + 1), zeros[i]
        assert float(radial[s]) < 0.15 * float(window.max())


# ----------------------------------------------------------------- noise and SNR
def test_measured_snr_matches_requested():
    cfg = point_config(snr=0.1, n_particles=60, ctf=True, box=32,
                       tilt=TiltScheme(-60.0, 60.0, 15.0, 2, 3.0))
    ds = simulate(cfg, seed=5)
    n = np.arange(cfg.n_particles)
    tilts = ds.acquisition.tilt_deg[0]
    t0 = int(np.argmin(np.abs(tilts)))
    clean = ds.clean_images(n)
    noisy = ds.particles.images.read(ds.particles.image_index[:, t0])
    assert measured_snr(clean[:, t0], noisy) == pytest.approx(0.1, rel=0.05)
    t60 = int(np.argmax(tilts))
    noise60 = ds.particles.images.read(ds.particles.image_index[:, t60]) - clean[:, t60]
    noise0 = noisy - clean[:, t0]
    assert float(noise60.var() / noise0.var()) == pytest.approx(2.0, rel=0.05)


# ----------------------------------------------------------------- missing tilts
def test_tilts_missing_at_requested_rate():
    rate = 0.2
    cfg = get_preset("demo", n_particles=300, missing_tilt_rate=rate)
    ds = simulate(cfg, seed=2)
    p = ds.particles
    frac = 1 - p.visible.mean()
    sd = math.sqrt(rate * (1 - rate) / p.visible.size)
    assert abs(frac - rate) < 4 * sd
    assert (p.image_index[~p.visible] == -1).all()
    assert len(p.images) == int(p.visible.sum())
    assert sorted(p.image_index[p.visible].tolist()) == list(range(int(p.visible.sum())))
    shared = simulate(cfg.replace(missing_per_tomogram=True, n_particles=60), seed=2).particles
    for tomo in set(shared.tomo_names):
        rows = shared.visible[np.array(shared.tomo_names) == tomo]
        assert (rows == rows[0]).all()


# ----------------------------------------------------------------- determinism and I/O
def test_same_seed_same_data_different_seed_different(tmp_path):
    cfg = get_preset("demo", n_particles=30, pose_error_deg=3.0, defocus_error_um=0.05)
    a, b, c = simulate(cfg, seed=7), simulate(cfg, seed=7), simulate(cfg, seed=8)
    ia, ib = a.particles.images.read(np.arange(20)), b.particles.images.read(np.arange(20))
    assert torch.equal(ia, ib)
    assert np.array_equal(a.particles.rotation, b.particles.rotation)
    assert a.truth.equals(b.truth)
    assert not torch.equal(ia, c.particles.images.read(np.arange(20)))
    assert not np.array_equal(a.particles.rotation, c.particles.rotation)
    # errors on the metadata only, truth exact
    err = a.truth["pose_error_deg"].to_numpy()
    assert 0.5 < err.mean() < 6.0
    assert not np.allclose(a.particles.defocus_u_A, a.acquisition.defocus_u_A)
    # batch size does not change the result
    d = simulate(cfg.replace(batch_size=7), seed=7)
    assert torch.equal(ia, d.particles.images.read(np.arange(20)))
    import tomohet.io as tio

    formats = ("relion5",) if hasattr(tio, "write_particles") else ()
    pa = a.write(tmp_path / "a", formats=formats)
    pb = b.write(tmp_path / "b", formats=formats)
    assert [p.name for p in pa] == [p.name for p in pb]
    import mrcfile

    for x, y in zip(pa, pb, strict=True):
        if x.suffix in (".mrc", ".mrcs"):  # headers may carry a time stamp
            assert np.array_equal(mrcfile.read(x), mrcfile.read(y)), x.name
        elif x.suffix in (".csv", ".star", ".json", ".tbl", ".txt"):
            assert x.read_bytes() == y.read_bytes(), x.name
    meta = json.loads((tmp_path / "a" / "simulation.json").read_text())
    assert meta["seed"] == 7 and meta["config"]["n_particles"] == 30
    assert "tomohet_version" in meta


# ----------------------------------------------------------------- truth and presets
def test_populations_match_fractions_and_rare_state_present():
    cfg = get_preset("mixed", n_particles=200, box=20, n_tomograms=2)
    ds = simulate(cfg, seed=0)
    truth = ds.truth
    fractions = {s["name"]: s["fraction"] for s in cfg.structure["states"]}
    counts = truth["state_name"].value_counts(normalize=True).to_dict()
    for name, f in fractions.items():
        assert abs(counts.get(name, 0.0) - f) < 0.01, name
    assert (truth["state_name"] == "noNMP").sum() >= 5  # the rare 4 % state
    assert set(truth["state"]) == {0, 1, 2}
    c0 = truth["c0"].to_numpy()
    assert c0.min() >= 0 and c0.max() <= 1 and abs(c0.mean() - 0.5) < 0.08
    for col in ("x_A", "y_A", "z_A", "rot_deg", "tilt_deg", "psi_deg", "tomogram"):
        assert col in truth.columns
    assert ds.state_volumes.shape == (3, 20, 20, 20)
    assert ds.particles.meta["format"] == "relion5"
    pure = simulate(get_preset("continuous", n_particles=20, box=20, n_tomograms=1), seed=0)
    assert (pure.truth["state"] == -1).all()


def test_discrete_components_sum_and_placement():
    cfg = get_preset("discrete", n_particles=120, box=24, n_tomograms=2, clustering=1.0)
    ds = simulate(cfg, seed=0)
    v = ds.state_volumes  # 70S, 70S+factor, 50S, 30S
    assert torch.allclose(v[0], v[2] + v[3], atol=1e-3 * float(v[0].max()))
    assert float((v[1] - v[0]).sum()) > 0
    pos = ds.acquisition.position_A
    tomo, state = ds.acquisition.tomogram, ds.acquisition.state
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    same_tomo = tomo[:, None] == tomo[None]
    off = same_tomo & ~np.eye(len(pos), dtype=bool)
    from tomohet.sim.build import particle_diameter_A

    assert d[off].min() >= particle_diameter_A(v, cfg.pixel_size_A) - 1e-6
    same_state = state[:, None] == state[None]
    assert d[off & same_state].mean() < 0.8 * d[off & ~same_state].mean()


def test_motions():
    from tomohet.sim.build import build_model

    spec = {"kind": "atoms", "model": "adk_open", "beads": "residue", "motions": [
        {"kind": "hinge", "residues": [[None, 122, 159]],
         "axis_residues": [[None, 121], [None, 160]], "max_angle_deg": 30.0},
        {"kind": "normal_mode", "mode": 0, "amplitude_A": 3.0}]}
    model = build_model(spec, 24, 3.0)
    ref = model.coordinates(np.zeros((1, 2)))[0]
    moved = model.coordinates(np.array([[1.0, 0.0]]))[0]
    lid = torch.as_tensor(model.model.select(residues=[(None, 122, 159)]))
    assert torch.allclose(moved[~lid], ref[~lid])
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(moved[lid], moved[lid], compute_mode=exact),
                          torch.cdist(ref[lid], ref[lid], compute_mode=exact), atol=1e-3)
    assert float((moved[lid] - ref[lid]).norm(dim=1).max()) > 5.0
    nm = model.coordinates(np.array([[0.0, 1.0]]))[0]
    rms = float(((nm - ref) ** 2).sum(1).mean().sqrt())
    assert rms == pytest.approx(3.0, rel=1e-3)
    interp = build_model(get_preset("continuous").structure, 24, 3.0)
    open_, closed = interp.coordinates(np.array([[0.0], [1.0]]))
    rmsd = float(((open_ - closed) ** 2).sum(1).mean().sqrt())
    assert 4.0 < rmsd < 12.0  # open vs closed adenylate kinase (~7 A)


def test_presets_and_config_round_trip():
    from tomohet.sim import list_presets

    names = list_presets()
    for base in ("demo", "discrete", "continuous", "mixed"):
        assert {base, f"{base}-easy", f"{base}-realistic"} <= set(names)
    assert get_preset("discrete-realistic").snr == 0.02
    assert get_preset("discrete").snr == 0.1
    small = get_preset("discrete", box=24, n_particles=50, n_tilts=11)
    assert small.pixel_size_A == pytest.approx(20.0)
    assert len(small.tilt.angles_deg()) == 11
    d = json.loads(json.dumps(small.to_dict()))
    assert SimulationConfig.from_dict(d) == small
    with pytest.raises(KeyError):
        get_preset("nonsense")


def test_cli_simulate(tmp_path, capsys):
    from tomohet.cli.main import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    help_text = sub.choices["simulate"].format_help()
    assert "tomohet simulate --preset demo" in help_text
    out = tmp_path / "sim"
    assert main(["simulate", "--preset", "demo", "--n-particles", "16", "--out", str(out),
                 "--formats", "", "--no-progress", "--seed", "4"]) == 0
    assert (out / "truth.csv").exists() and (out / "state_00.mrc").exists()
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["seed"] == 4 and meta["config"]["n_particles"] == 16
    assert "16 particles" in capsys.readouterr().out


def test_grid_mode_snaps_coordinates_and_truth_follows():
    cfg = get_preset("continuous", n_particles=10, box=20, n_tomograms=1, ctf=False,
                     dose_weighting=False)
    cfg.structure["continuous_mode"] = "grid"
    cfg.structure["n_grid"] = 5
    ds = simulate(cfg, seed=1)
    c0 = ds.truth["c0"].to_numpy()
    assert set(np.round(c0, 6)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    clean = ds.clean_images(np.arange(10)).numpy()
    acq = ds.acquisition
    for n in range(0, 10, 3):
        full = torch.as_tensor(acq.tilt_rotation[n] @ acq.rotation[n], dtype=torch.float32)
        proj = project_volumes(ds.true_volume(n), full)[0].numpy()
        assert corr(proj, clean[n]) > 0.99


def test_model_density_selection():
    from tomohet.sim.structures import model_density, read_model

    full = model_density("adk_open", 3.0, 32, resolution_A=6.0)
    lid = model_density("adk_open", 3.0, 32, resolution_A=6.0, residues=[(None, 122, 159)])
    model = read_model("adk_open")
    share = model.weight[model.select(residues=[(None, 122, 159)])].sum() / model.weight.sum()
    assert float(full.sum()) == pytest.approx(model.weight.sum(), rel=1e-3)
    assert float(lid.sum() / full.sum()) == pytest.approx(share, rel=1e-3)

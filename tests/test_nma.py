"""nma: normal-mode flexible fitting (HEMNMA-3D / MDTOMO style)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tomohet.data.sources import DataError
from tomohet.methods.nma import NMA
from tomohet.methods.nma.basis import basis_from_model
from tomohet.methods.nma.fit import BeadModel, FitData
from tomohet.physics.elastic import anm_modes, gaussian_atoms_ft
from tomohet.physics.fourier import freq_grid_3d, volume_to_ft

MODEL = str(Path(__file__).resolve().parents[1] / "src/tomohet/sim/structures/adk_open.pdb.gz")


@pytest.fixture(scope="module")
def nm_data():
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("normalmode", n_particles=60, n_tomograms=1, n_tilts=21, snr=10.0)
    return simulate(cfg, seed=3)


def test_gaussian_transform_matches_rendered_density():
    """The analytic transform equals the FFT of the simulator's voxel-integrated
    Gaussians (independent code) at low frequencies, once the voxel box-car is removed."""
    from tomohet.sim.structures import atoms_to_density

    rng = np.random.default_rng(0)
    xyz = torch.as_tensor(rng.uniform(-5, 5, (12, 3)), dtype=torch.float32)
    w = torch.as_tensor(rng.uniform(1, 3, 12), dtype=torch.float32)
    sig = torch.full((12,), 1.5)
    vol = atoms_to_density(xyz, w, sig, 24, 1.0)
    ft = volume_to_ft(vol)
    k = freq_grid_3d(24)
    keep = k.norm(dim=-1) < 0.2
    box_car = torch.sinc(k[keep]).prod(-1)
    ours = gaussian_atoms_ft(xyz, w, sig, k[keep]) * box_car
    err = (ours - ft[keep]).abs().max() / ft.abs().max()
    assert err < 2e-3


def test_anm_modes_are_orthonormal_and_free_of_rigid_motion():
    """Properties any elastic-network mode must have, checked independently of the
    Hessian: unit norm, mutually orthogonal, no net translation or rotation, and an
    energy (sum of spring stretches^2 / r^2 over contacts) that grows with the mode."""
    beads = np.random.default_rng(4).normal(0, 5, (40, 3))  # one rigid network at 12 A
    modes = anm_modes(beads, 4, 12.0)
    flat = modes.reshape(4, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(4), atol=1e-8)
    np.testing.assert_allclose(modes.sum(1), 0, atol=1e-8)  # no translation
    centred = beads - beads.mean(0)
    np.testing.assert_allclose(np.cross(centred[None], modes).sum(1), 0, atol=1e-8)
    i, j = np.nonzero(np.triu(((beads[:, None] - beads[None]) ** 2).sum(-1) < 144.0, 1))
    d = beads[i] - beads[j]

    def energy(v):
        return float((((v[i] - v[j]) * d).sum(1) ** 2 / (d**2).sum(1)).sum())

    e = [energy(m) for m in modes]
    assert all(a <= b + 1e-9 for a, b in zip(e, e[1:], strict=False)) and e[0] > 0
    with pytest.raises(ValueError, match="zero-energy"):  # two separate networks
        anm_modes(np.concatenate([beads, beads + 100.0]), 2, 12.0)


def test_jacobian_matches_finite_differences():
    beads = np.random.default_rng(1).normal(0, 5, (30, 3))
    from tomohet.methods.nma.basis import DeformationBasis

    modes = anm_modes(beads, 3, 20.0)
    modes = modes / np.sqrt((modes**2).sum(-1).mean(-1))[:, None, None]
    basis = DeformationBasis(beads, np.ones(30), np.zeros(30), modes, "anm", "test")
    k = freq_grid_3d(16).reshape(-1, 3)
    k = k[(k.norm(dim=-1) < 0.25) & (k.norm(dim=-1) > 0)]
    data = FitData(torch.zeros(1, len(k), dtype=torch.complex64), torch.ones(1, len(k)), k,
                   torch.ones(len(k)), torch.round(k.norm(dim=-1) * 16).long())
    model = BeadModel(basis, 2.0, 4.0, data, torch.device("cpu"))
    model.beads = model.beads.double()
    model.modes = model.modes.double()
    model.weight, model.sigma_px = model.weight.double(), model.sigma_px.double()
    model.freq, model.scale = k.double(), model.scale.double()
    p = torch.tensor([[1.0, -0.5, 0.3, 0.2, -0.1, 0.4, 0.0, 0.0, 0.0]], dtype=torch.float64)
    _, jac = model.transform_and_jacobian(p)
    for j in range(6):  # amplitudes and shifts: exact
        e = torch.zeros_like(p)
        e[0, j] = 1e-5
        fd = (model.transform(p + e) - model.transform(p - e)) / 2e-5
        assert (fd - jac[0, :, j]).abs().max() < 1e-5 * fd.abs().max().clamp_min(1)
    for j in range(6, 9):  # rotation: exact at w = 0
        e = torch.zeros_like(p)
        e[0, j] = 1e-5
        fd = (model.transform(p + e) - model.transform(p - e)) / 2e-5
        assert (fd - jac[0, :, j]).abs().max() < 1e-4 * fd.abs().max().clamp_min(1)


def _fit(particles, **kw):
    params = dict(model=MODEL, cluster=None, progress=False, n_modes=4)
    params.update(kw)
    return NMA(**params).fit(particles)


def test_recovers_mode_amplitudes_at_high_snr(nm_data):
    m = _fit(nm_data.particles)
    truth = nm_data.truth[["c0", "c1"]].to_numpy()
    for j in range(2):  # the two largest true modes, each in its own amplitude
        assert abs(spearmanr(m.amplitudes_[:, j], truth[:, j]).statistic) > 0.9
    assert abs(spearmanr(m.transform()[:, 0], truth[:, 0]).statistic) > 0.9


def test_row_permutation_and_batch_size_do_not_change_results(nm_data):
    p = nm_data.particles
    a = _fit(p, batch_size=16).amplitudes_
    perm = np.random.default_rng(2).permutation(p.n_particles)
    b = _fit(p.subset(perm), batch_size=7).amplitudes_
    # the same to float round-off, which an iterative fit can carry to a few mA (the
    # amplitudes' spread is ~3 A)
    np.testing.assert_allclose(b, a[perm], atol=0.02)
    assert np.abs(b - a[perm]).mean() < 1e-3


def test_ensemble_basis_spans_the_ensemble_motion(tmp_path):
    """MDTOMO: a multi-model PDB -> its principal components as the basis."""
    from tomohet.io.atom_models import read_atom_models, write_multimodel_pdb

    m = read_atom_models(MODEL)
    ref = basis_from_model(MODEL, 1)
    move = ref.deform_atoms(np.array([[-4.0], [-1.0], [2.0], [5.0]]))
    path = tmp_path / "ensemble.pdb"
    write_multimodel_pdb(path, move, m.chain, m.resnum, m.res_name, m.atom_name)
    ens = basis_from_model(str(path), 5)
    assert ens.kind == "ensemble" and ens.n_modes == 1
    cos = abs((ens.modes[0] * ref.modes[0]).sum()) / np.sqrt(
        (ens.modes[0] ** 2).sum() * (ref.modes[0] ** 2).sum())
    assert cos > 0.99


def test_bad_models_and_weights_are_refused(nm_data, tmp_path):
    p = nm_data.particles
    empty = tmp_path / "empty.pdb"
    empty.write_text("REMARK nothing here\nEND\n")
    with pytest.raises(DataError, match="empty.pdb.*no atoms"):
        _fit(p, model=str(empty))
    with pytest.raises(DataError, match="adk_open.*outside the box"):
        _fit(p, centre_model=False)  # ADK's file coordinates are far from this box
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    sub = subtomograms_from_tilts(p.subset(np.arange(4)), tmp_path / "c", progress=False)
    sub = replace(sub, weights=None, meta=dict(sub.meta, source="subtomos.star"))
    with pytest.raises(DataError, match="subtomos.star.*rlnCtfImage"):
        _fit(sub)

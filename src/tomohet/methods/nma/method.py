"""``nma``: HEMNMA-3D / MDTOMO-style normal-mode flexible fitting of subtomograms.

Basis (:mod:`~tomohet.methods.nma.basis`): ANM modes of the atomic model ``model`` (PDB or
mmCIF), or the principal components of its models when the file holds several (an MD
ensemble, MDTOMO), or ANM modes of pseudo-atoms fitted to the consensus map when no model
is given. Fit (:mod:`~tomohet.methods.nma.fit`): per particle, the mode amplitudes and a
small rigid correction that best explain its data through its own wedge and CTF, with a
Gaussian prior on the amplitudes. Outputs: the PCA of the amplitudes as the latent
(``transform``), clusters, trajectories along each principal axis as multi-model PDB
frames and as maps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tomohet.data.particles import SubtomogramParticles
from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_write_text
from tomohet.methods.base import HeterogeneityMethod, ParticleSet, register, resolve_device, seed_of
from tomohet.methods.nma.basis import (
    DeformationBasis,
    basis_from_map,
    basis_from_model,
    check_in_box,
)
from tomohet.methods.nma.fit import BeadModel, fit_particles, fit_scale_and_noise, gather_data
from tomohet.physics.elastic import gaussian_atoms_ft
from tomohet.physics.fourier import freq_grid_3d, ft_to_volume

__all__ = ["NMA", "check_weights", "render_beads"]


def check_weights(particles: ParticleSet, name: str) -> None:
    """DataError when subtomograms come without 3D CTF / wedge weights (a fit through the
    wedge needs them): names the file and the field."""
    if isinstance(particles, SubtomogramParticles) and particles.weights is None:
        src = particles.meta.get("source", "particle set")
        raise DataError(f"{src}: {name} needs each subtomogram's 3D CTF/wedge weight "
                        "(field rlnCtfImage); none given")


def render_beads(basis: DeformationBasis, beads_A: np.ndarray, box: int, pixel_size_A: float,
                 resolution_A: float) -> torch.Tensor:
    """Maps (F, D, D, D) of bead positions (F, M, 3): exact Gaussian transforms on the
    box's rfft grid, inverse transformed."""
    freq = freq_grid_3d(box).reshape(-1, 3)
    sig = np.sqrt((0.225 * resolution_A) ** 2 + basis.sigma_A**2) / pixel_size_A
    out = []
    for xyz in np.asarray(beads_A):
        ft = gaussian_atoms_ft(torch.as_tensor(xyz / pixel_size_A, dtype=torch.float32),
                               torch.as_tensor(basis.weight, dtype=torch.float32),
                               torch.as_tensor(sig, dtype=torch.float32), freq)
        out.append(ft_to_volume(ft.reshape(box, box, box // 2 + 1), box))
    return torch.stack(out)


@register
class NMA(HeterogeneityMethod):
    """Normal-mode flexible fitting (HEMNMA-3D; MDTOMO with a multi-model ``model``).

    ``model``: PDB/mmCIF path (None: pseudo-atoms in the consensus map);
    ``centre_model``: place the model's centre of mass at the box centre (as the
    simulator does), else its coordinates are taken in the map frame (origin at the box
    corner). ``n_modes`` modes (ANM cutoff ``cutoff_A``); ``lowpass_A`` the finest detail
    fitted (None: 5 pixels); ``prior_sd_A`` the prior SD of each amplitude (A RMS);
    ``rigid_sd_A`` that of the rigid correction (0: none); ``n_iter`` LM iterations.
    """

    name = "nma"
    kind = "continuous"
    input_kind = "either"
    bench_params = {"cluster": None}

    def __init__(self, model: str | None = None, n_modes: int = 6, cutoff_A: float = 15.0,
                 centre_model: bool = True, n_pseudo: int = 200, lowpass_A: float | None = None,
                 resolution_A: float | None = None, prior_sd_A: float = 5.0,
                 rigid_sd_A: float = 2.0, n_iter: int = 10, n_components: int | None = None,
                 cluster: str | None = "gmm", n_clusters: int | None = None,
                 max_clusters: int = 8, batch_size: int = 32, device: str | None = None,
                 progress: bool = True, random_state: int | None = None) -> None:
        self.model = model
        self.n_modes = n_modes
        self.cutoff_A = cutoff_A
        self.centre_model = centre_model
        self.n_pseudo = n_pseudo
        self.lowpass_A = lowpass_A
        self.resolution_A = resolution_A
        self.prior_sd_A = prior_sd_A
        self.rigid_sd_A = rigid_sd_A
        self.n_iter = n_iter
        self.n_components = n_components
        self.cluster = cluster
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.random_state = random_state

    def _bar(self, total: int, what: str) -> tqdm:
        return tqdm(total=total, desc=f"{self.name} {what}", unit="ptcl",
                    disable=not self.progress, leave=False)

    def _basis(self, particles: ParticleSet, device: torch.device) -> DeformationBasis:
        o = particles.optics
        if self.model is not None:
            basis = basis_from_model(str(self.model), self.n_modes, self.cutoff_A,
                                     centre=self.centre_model)
            if not self.centre_model:  # map frame: origin at the box corner
                shift = (o.box // 2) * o.pixel_size_A
                basis.beads_A = basis.beads_A - shift
                if basis.atoms is not None:
                    basis.atoms.xyz_A = basis.atoms.xyz_A - shift
            check_in_box(basis, o.box, o.pixel_size_A)
            return basis
        from tomohet.methods.linear.reference import global_average, padded_to_volume

        avg = global_average(particles, self.batch_size, device)
        consensus = padded_to_volume(avg.mean_ft, o.box).cpu()
        return basis_from_map(consensus, o.pixel_size_A, self.n_modes, self.n_pseudo,
                              seed_of(self.random_state))

    def fit(self, particles: ParticleSet) -> NMA:
        self._check_input(particles)
        check_weights(particles, self.name)
        if self.n_modes < 1:
            raise ValueError(f"{self.name}: n_modes must be >= 1")
        device = resolve_device(self.device)
        o = particles.optics
        t0 = time.perf_counter()
        basis = self._basis(particles, device)  # bad models fail here, before any pass
        lowpass_px = (self.lowpass_A / o.pixel_size_A) if self.lowpass_A else 5.0
        resolution = self.resolution_A or 2.0 * o.pixel_size_A
        bar = self._bar(2 * particles.n_particles, "data + fit")
        data = gather_data(particles, o.box, max(lowpass_px, 2.0), self.batch_size, device,
                           progress=bar.update)
        model = BeadModel(basis, o.pixel_size_A, resolution, data, device)
        sigma2 = fit_scale_and_noise(model, data, self.batch_size)
        params, costs = fit_particles(model, data, sigma2, self.prior_sd_A, self.rigid_sd_A,
                                      self.n_iter, self.batch_size, progress=bar.update)
        bar.close()
        k = basis.n_modes
        self.basis_ = basis
        self.amplitudes_ = params[:, :k]
        self.rigid_ = params[:, k:]
        self.costs_ = costs
        self.noise_power_ = sigma2
        self.shell_scale_ = model.scale.cpu().numpy()
        self.pixel_size_A_ = o.pixel_size_A
        self.box_ = o.box
        self.resolution_A_ = resolution
        self._pca()
        self.labels_, self.cluster_info_ = self._cluster_latent(self.latent_)
        self.timings_ = {"fit_s": time.perf_counter() - t0}
        return self

    def _pca(self) -> None:
        """Principal axes of the amplitudes (sign fixed: largest loading positive)."""
        a = self.amplitudes_
        self.amplitude_mean_ = a.mean(0)
        cov = np.atleast_2d(np.cov((a - self.amplitude_mean_).T)) if len(a) > 1 \
            else np.zeros((a.shape[1], a.shape[1]))
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1]
        vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
        big = np.abs(vecs).argmax(0)
        vecs = vecs * np.where(vecs[big, np.arange(len(big))] < 0, -1.0, 1.0)
        nc = self.n_components or a.shape[1]
        self.components_ = vecs[:, :nc].T  # (C, K)
        self.explained_variance_ratio_ = vals[:nc] / max(vals.sum(), 1e-30)
        self.latent_ = (a - self.amplitude_mean_) @ self.components_.T

    # ------------------------------------------------------------------ outputs
    def transform(self, particles: ParticleSet | None = None) -> np.ndarray:
        return self._fitted_output("latent_", particles)

    def predict(self, particles: ParticleSet | None = None) -> np.ndarray:
        if vars(self).get("latent_") is not None and self.labels_ is None:
            raise NotImplementedError(f"{self.name}: fitted without clustering")
        return self._fitted_output("labels_", particles)

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        beads = self.basis_.deform(self.amplitudes_[np.asarray(index)])
        vols = render_beads(self.basis_, beads, self.box_, self.pixel_size_A_,
                            self.resolution_A_)
        return vols / vols.flatten(1).std(1).clamp_min(1e-12)[:, None, None, None]

    def trajectory_amplitudes(self, n_steps: int = 9, span: float = 2.0
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Amplitudes (C, n_steps, K) along each principal axis from -span to +span SD."""
        steps = np.linspace(-span, span, n_steps)
        sd = self.latent_.std(0)
        amps = (self.amplitude_mean_[None, None] + steps[None, :, None] * sd[:, None, None]
                * self.components_[:, None, :])
        return amps, steps

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        """latent.csv (PCA of amplitudes), amplitudes.csv, assignments.csv when clustered,
        the star with latent columns; ``component_XX/trajectory.pdb`` (multi-model, when
        the basis has atoms) and ``component_XX/frame_YY.mrc``; method.json."""
        import pandas as pd

        from tomohet.io.atom_models import write_multimodel_pdb
        from tomohet.io.mrc import write_mrc
        from tomohet.methods.outputs import save_continuous

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_continuous(self, out, particles)
        cols = {f"mode_{j + 1:02d}_A": self.amplitudes_[:, j]
                for j in range(self.amplitudes_.shape[1])}
        table = pd.DataFrame({"particle": particles.names, **cols})
        atomic_write_text(out / "amplitudes.csv", table.to_csv(index=False))
        amps, steps = self.trajectory_amplitudes()
        b = self.basis_
        for c in range(amps.shape[0]):
            folder = out / f"component_{c + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            if b.atoms is not None:
                at = b.atoms
                write_multimodel_pdb(folder / "trajectory.pdb", b.deform_atoms(amps[c]),
                                     at.chain, at.resnum, at.res_name, at.atom_name)
            vols = render_beads(b, b.deform(amps[c]), self.box_, self.pixel_size_A_,
                                self.resolution_A_)
            for i, t in enumerate(steps):
                write_mrc(folder / f"frame_{i:02d}_{t:+.1f}sd.mrc", vols[i].numpy(),
                          self.pixel_size_A_)
        info = {"method": self.name, "basis": b.kind, "basis_source": b.source,
                "n_modes": b.n_modes, "noise_power": self.noise_power_,
                "explained_variance_ratio": self.explained_variance_ratio_.tolist(),
                "params": {k: v if isinstance(v, int | float | str | bool | type(None))
                           else repr(v) for k, v in self.get_params().items()},
                "timings_s": self.timings_}
        if self.labels_ is not None:
            info["clusters"] = self.cluster_info_
        atomic_write_text(out / "method.json", json.dumps(info, indent=1))

"""``vae3d``: an OPUS-TOMO style 3D convolutional VAE on subtomograms.

Input: tilt stacks (each particle's subtomogram and 3D weight back-projected on the fly in
the reference frame, as ``ml3d`` does) or RELION 3.1/4 / STOPGAP subtomograms with their 3D
CTF/wedge weights (:mod:`tomohet.methods.vae3d.data`). Model and loss:
:mod:`tomohet.methods.vae3d.model` -- the decoder's map is compared with each subtomogram
through that particle's own wedge and CTF, in Fourier space, never in its missing wedge.

Memory: each particle's (Y, W) on the working box ``s`` (12 s^2 (s/2+1) bytes: 209 KB at
s = 32) is kept in an anonymous temporary file for the length of the fit
(:mod:`tomohet.methods.vae3d.store`), not in memory: in ``checkpoint_dir`` when one is
given, else in ``TMPDIR`` (which should then be a disk, not a RAM-backed tmpfs). Under
``tomohet --ranks N`` / ``torchrun`` the ranks share that file, each computing its own
row blocks (:func:`tomohet.methods.vae3d.data.build_data`), and each encodes its own
blocks, the latents gathered on every rank (:func:`tomohet.methods.vae3d.train.encode_all`).

Outputs of :meth:`save` are those of ``vae`` (so ``tomohet analyze`` reads a vae3d run
folder as it reads a vae one): ``latent.csv``, ``latent_logvar.csv``, ``weights.pt``
(state dicts and plain containers, ``torch.load(..., weights_only=True)``, config
``arch: vae3d``), ``history.json``/``.csv``, ``convergence.png``, ``consensus.mrc``,
``particles.star`` with latent columns, ``summary.json``; per-epoch checkpoints in
``checkpoints/`` when ``checkpoint_dir`` is given (``resume`` continues from the latest).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.base import (
    HeterogeneityMethod,
    ParticleSet,
    register,
    resolve_device,
    seed_of,
)
from tomohet.methods.nma.method import check_weights
from tomohet.methods.vae.checkpoint import resume_point, save_checkpoint
from tomohet.methods.vae.diagnostics import collapse_warning, history_row, latent_diagnostics
from tomohet.methods.vae.train import progress_bar
from tomohet.methods.vae3d import data as D
from tomohet.methods.vae3d.model import Vae3D
from tomohet.methods.vae3d.train import encode_all, train_epoch
from tomohet.physics.fourier import ft_to_volume

__all__ = ["Vae3DMethod", "model_from_checkpoint"]


def model_from_checkpoint(ck: dict[str, Any], device: torch.device | str = "cpu") -> Vae3D:
    """The model of a ``vae3d`` checkpoint (``load_checkpoint`` dict)."""
    model = Vae3D(ck["config"]).to(device)
    model.load_state_dict(ck["model"])
    return model


@register
class Vae3DMethod(HeterogeneityMethod):
    """Continuous heterogeneity from subtomograms with a 3D convolutional VAE."""

    name: ClassVar[str] = "vae3d"
    kind: ClassVar[str] = "continuous"
    input_kind: ClassVar[str] = "either"
    bench_params: ClassVar[dict[str, Any]] = {"zdim": 4, "n_epochs": 10}

    def __init__(self, zdim: int = 8, n_epochs: int = 20, batch_size: int = 8,
                 lr: float = 1e-3, beta: float = 1.0, beta_warmup: int = 3,
                 enc_channels: int = 8, enc_hidden: int = 128, dec_channels: int = 8,
                 enc_lowpass: float = 1.0,
                 max_resolution_A: float | None = None, device: str | None = None,
                 checkpoint_dir: str | None = None, resume: bool = False,
                 progress: bool = True, random_state: int | None = 0) -> None:
        self.zdim = zdim
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.beta_warmup = beta_warmup
        self.enc_channels = enc_channels
        self.enc_hidden = enc_hidden
        self.dec_channels = dec_channels
        self.enc_lowpass = enc_lowpass
        self.max_resolution_A = max_resolution_A
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.random_state = random_state

    def _beta(self, epoch: int) -> float:
        w = int(self.beta_warmup)
        return float(self.beta) * (1.0 if w <= 0 else min(1.0, (epoch + 1) / (w + 1)))

    def model_config(self, data: D.SubtomoData, floor: float) -> dict[str, Any]:
        return {"arch": "vae3d", "box": data.box, "small": data.small, "zdim": int(self.zdim),
                "enc_channels": int(self.enc_channels), "enc_hidden": int(self.enc_hidden),
                "dec_channels": int(self.dec_channels), "floor": float(floor),
                "enc_lowpass": float(self.enc_lowpass),
                "seed": seed_of(self.random_state)}

    # ------------------------------------------------------------ fit
    def fit(self, particles: ParticleSet) -> Vae3DMethod:
        self._check_input(particles)
        check_weights(particles, self.name)
        if int(self.zdim) < 1 or particles.n_particles < 2:
            raise ValueError(f"{self.name}: zdim >= 1 and at least 2 particles needed")
        dev = resolve_device(self.device)
        self.n_particles_ = particles.n_particles
        self.ident_ = (list(particles.names), list(particles.tomo_names))
        # (Y, W) of every particle on disk (a temporary file, freed at the end): memory
        # does not grow with the number of particles
        if self.checkpoint_dir:
            Path(self.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        data = D.build_data(particles, self.max_resolution_A, int(self.batch_size), dev,
                            folder=self.checkpoint_dir or None)
        try:
            self.pixel_size_A_ = data.working_pixel_A
            model, opt, start, history, prev = self._start(data, dev)
            self._train(model, opt, data, start, history, prev, dev)
        finally:
            data.close()
        return self

    def _start(self, data: D.SubtomoData, dev: torch.device
               ) -> tuple[Vae3D, torch.optim.Optimizer, int, list[dict[str, Any]],
                          torch.Tensor | None]:
        """A fresh model (consensus, noise, scales from the data) or the latest checkpoint."""
        found = resume_point(self.checkpoint_dir, self.resume, self.lr, dev,
                             model_from_checkpoint)
        if found is not None:
            ck, model, opt = found
            if (model.config["small"], model.zdim) != (data.small, int(self.zdim)):
                raise ValueError(f"{ck['path']}: checkpoint has working box "
                                 f"{model.config['small']} and zdim {model.zdim}; this run "
                                 f"{data.small} and {self.zdim}")
            return model, opt, int(ck["epoch"]), list(ck["history"]), ck["mu"].cpu()
        floor = D.weight_floor(data)
        model = Vae3D(self.model_config(data, floor))
        mu_ft, noise = D.consensus_and_noise(data, floor)
        rms, wmean = D.encoder_scales(data, mu_ft, model.enc_filter)
        cons = ft_to_volume(mu_ft, data.small)
        with torch.no_grad():
            model.consensus.copy_(cons)
            model.noise.copy_(noise)
            model.scales.copy_(torch.tensor([rms, wmean, float(cons.std()) or 1.0]))
        model = model.to(dev)
        return model, torch.optim.Adam(model.parameters(), lr=self.lr), 0, [], None

    def _train(self, model: Vae3D, opt: torch.optim.Optimizer, data: D.SubtomoData,
               start: int, history: list[dict[str, Any]], prev: torch.Tensor | None,
               dev: torch.device) -> None:
        self.warnings_: list[str] = []
        floor = float(model.config["floor"])
        for epoch in range(start, int(self.n_epochs)):
            update, close = progress_bar(data.n_particles,
                                         f"{self.name} epoch {epoch + 1}/{self.n_epochs}",
                                         bool(self.progress))
            try:
                stats = train_epoch(model, opt, data, epoch, seed=seed_of(self.random_state),
                                    batch_size=int(self.batch_size), beta=self._beta(epoch),
                                    floor=floor, names=self.ident_[0],
                                    tomo_names=self.ident_[1], device=dev, progress=update)
            finally:
                close()
            mu, lv = encode_all(model, data, dev)
            diag = latent_diagnostics(mu, lv, prev)
            history.append(history_row(epoch, stats, diag))
            prev = mu
            if self.progress:
                print(f"{self.name} epoch {epoch + 1}: loss {stats['loss']:.5g} "
                      f"(kl {stats['kl']:.3g}) active dims {diag['active_dims']} "
                      f"{stats['seconds']:.1f}s", flush=True)
            if self.checkpoint_dir and parallel.is_main():  # one writer under --ranks
                path = Path(self.checkpoint_dir, "checkpoints", f"epoch_{epoch + 1:03d}.pt")
                save_checkpoint(path, cast(Any, model), opt, epoch + 1, history, mu)
        mu, lv = encode_all(model, data, dev)
        self.model_ = model
        self.history_ = history
        self.latent_ = mu.numpy().astype(np.float32)
        self.logvar_ = lv.numpy().astype(np.float32)
        if history:
            msg = collapse_warning(latent_diagnostics(mu, lv, None))
            if msg:
                self.warnings_.append(msg)
                warnings.warn(f"{self.name}: {msg}", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------ outputs
    def transform(self, particles: ParticleSet | None = None) -> np.ndarray:
        return self._fitted_output("latent_", particles)

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        return self.volumes_at(self.latent_[np.asarray(index)])

    def volumes_at(self, z: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Maps (n, D, D, D) decoded at latents ``z`` (n, Z)."""
        return self.model_.volumes(torch.as_tensor(np.asarray(z), dtype=torch.float32))

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        from tomohet.methods.vae.run_outputs import save_vae_run

        px = float(particles.optics.pixel_size_A)
        save_vae_run(self, Path(out_dir), particles, cast(Any, self.model_),
                     {"method": self.name, "pixel_size_A": px},
                     self._consensus_map().numpy(), px,
                     {"method": self.name, "particles": self.n_particles_,
                      "working_box": int(self.model_.small),
                      "working_pixel_A": float(self.pixel_size_A_),
                      "warnings": list(self.warnings_)})

    def _consensus_map(self) -> torch.Tensor:
        from tomohet.methods.vae3d.model import pad_volume

        box = int(self.model_.config["box"])
        return pad_volume(self.model_.consensus.detach().cpu()[None], box)[0]

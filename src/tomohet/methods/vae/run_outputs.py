"""What a trained VAE run leaves in its folder (``vae``, ``vae-et``, ``vae3d``): the
continuous-method outputs, the latent log-variances, the weights checkpoint, the
consensus map, the training history and its plot, and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tomohet.io import write_latent_csv, write_mrc
from tomohet.io.atomic import atomic_write_text
from tomohet.methods.base import ParticleSet
from tomohet.methods.vae.checkpoint import save_checkpoint
from tomohet.methods.vae.diagnostics import plot_convergence, write_history

__all__ = ["save_vae_run"]


def save_vae_run(method: Any, out: Path, particles: ParticleSet, model: Any,
                 meta: dict[str, Any], consensus: np.ndarray, pixel_size_A: float,
                 summary: dict[str, Any]) -> None:
    """Write the run of a fitted VAE ``method`` (``latent_``, ``logvar_``, ``history_``)
    to ``out``; ``meta`` goes into the checkpoint, ``consensus`` (D, D, D) to
    ``consensus.mrc`` at ``pixel_size_A``, ``summary`` to ``summary.json``."""
    from tomohet.methods.outputs import save_continuous

    save_continuous(method, out, particles)
    write_latent_csv(out / "latent_logvar.csv", particles.names, method.logvar_)
    save_checkpoint(out / "weights.pt", model, None, len(method.history_), method.history_,
                    torch.as_tensor(method.latent_), meta)
    write_mrc(out / "consensus.mrc", consensus, pixel_size_A)
    write_history(method.history_, out)
    plot_convergence(method.history_, out / "convergence.png")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))

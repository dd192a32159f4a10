"""EM state and its checkpoint: class volumes, priors, noise, posteriors and history,
saved atomically as npz (no pickles) and resumed only on the particles it describes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tomohet.io.atomic import atomic_path

__all__ = ["EMState", "particles_fingerprint"]


@dataclass
class EMState:
    volumes: torch.Tensor  # (K, D, D, D)
    priors: torch.Tensor  # (K,)
    sigma2: torch.Tensor  # noise model
    posteriors: np.ndarray  # (N, K)
    iteration: int = 0
    log_likelihood: float = -math.inf
    anneal_from: int = 0  # iteration at which the current annealing schedule started
    fsc: list[list[float]] = field(default_factory=list)
    resolution_A: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    particles: str = ""  # fingerprint of the particles (and their order) it describes

    def save(self, path: Path) -> None:
        """Checkpoint as npz (+ JSON history inside), written atomically."""
        with atomic_path(path) as tmp:
            np.savez(
                tmp, volumes=self.volumes.cpu().numpy(), priors=self.priors.cpu().numpy(),
                sigma2=self.sigma2.cpu().numpy(), posteriors=self.posteriors,
                iteration=self.iteration, log_likelihood=self.log_likelihood,
                anneal_from=self.anneal_from, fsc=np.asarray(self.fsc, dtype=float),
                resolution_A=np.asarray(self.resolution_A), history=json.dumps(self.history),
                particles=self.particles,
            )

    @classmethod
    def load(cls, path: Path) -> EMState:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                volumes=torch.from_numpy(z["volumes"]), priors=torch.from_numpy(z["priors"]),
                sigma2=torch.from_numpy(z["sigma2"]), posteriors=z["posteriors"],
                iteration=int(z["iteration"]), log_likelihood=float(z["log_likelihood"]),
                anneal_from=int(z["anneal_from"]) if "anneal_from" in z.files else 0,
                fsc=z["fsc"].tolist(), resolution_A=z["resolution_A"].tolist(),
                history=json.loads(str(z["history"])),
                particles=str(z["particles"]) if "particles" in z.files else "",
            )


def particles_fingerprint(names, tomo_names) -> str:
    """Hash of the ordered particle identities (tomogram, name): a checkpoint is resumed
    only on the particles, in the order, that it was written for."""
    h = hashlib.blake2b(digest_size=12)
    for t, n in zip(tomo_names, names, strict=True):
        h.update(f"{t}\x1f{n}\x1e".encode("utf-8", "surrogatepass"))
    return h.hexdigest()

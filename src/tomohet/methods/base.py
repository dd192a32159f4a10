"""The one interface every heterogeneity method implements, and the registry.

scikit-learn style: ``__init__`` stores hyperparameters (and ``random_state``) only;
``fit(particles)`` learns and returns ``self``. Discrete methods implement
``predict``/``predict_proba``; continuous ones ``transform``. Methods that can produce a
volume for a particle implement ``particle_volumes`` (used by the per-particle FSC metric).

A method registers with :func:`register`; ``tomohet bench`` and the shared test suite
iterate :data:`REGISTRY` after :func:`tomohet.methods.load_all` has imported the built-in
methods (:func:`tomohet.methods.get_method` does so itself).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles

__all__ = ["HeterogeneityMethod", "REGISTRY", "register", "ParticleSet"]

ParticleSet = TiltSeriesParticles | SubtomogramParticles

REGISTRY: dict[str, type[HeterogeneityMethod]] = {}


def register(cls: type[HeterogeneityMethod]) -> type[HeterogeneityMethod]:
    """Class decorator adding a method to :data:`REGISTRY` under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


class HeterogeneityMethod:
    """Base class. Subclasses set ``name``, ``kind`` and ``input_kind``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "discrete"  # "discrete" or "continuous"
    input_kind: ClassVar[str] = "tilt"  # "tilt", "subtomo" or "either"
    # parameters ``tomohet bench`` passes for a quick run; overridable per preset
    bench_params: ClassVar[dict[str, Any]] = {}

    random_state: int | None

    # -- sklearn-style parameter handling
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> HeterogeneityMethod:
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"{self.name}: unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- helpers for subclasses
    def _generator(self, offset: int = 0) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed((0 if self.random_state is None else int(self.random_state)) + offset)
        return g

    def _rng(self, offset: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            None if self.random_state is None else int(self.random_state) + offset
        )

    def _check_input(self, particles: ParticleSet) -> None:
        ok = {
            "tilt": isinstance(particles, TiltSeriesParticles),
            "subtomo": isinstance(particles, SubtomogramParticles),
            "either": isinstance(particles, TiltSeriesParticles | SubtomogramParticles),
        }[self.input_kind]
        if not ok:
            raise TypeError(
                f"{self.name} needs {self.input_kind} input, got {type(particles).__name__}"
            )

    # -- the interface
    def fit(self, particles: ParticleSet) -> HeterogeneityMethod:
        raise NotImplementedError

    def predict(self, particles: ParticleSet | None = None) -> np.ndarray:
        """(N,) integer class labels (discrete methods)."""
        raise NotImplementedError(f"{self.name} is not a discrete method")

    def predict_proba(self, particles: ParticleSet | None = None) -> np.ndarray:
        """(N, K) class posteriors; one-hot by default."""
        labels = self.predict(particles)
        k = int(labels.max()) + 1 if len(labels) else 0
        return np.eye(k)[labels]

    def transform(self, particles: ParticleSet | None = None) -> np.ndarray:
        """(N, Z) latent coordinates (continuous methods)."""
        raise NotImplementedError(f"{self.name} is not a continuous method")

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        """(len(index), D, D, D) the method's volume for each particle, or None."""
        return None

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        """Write the method's outputs (maps, star, csv) into ``out_dir``."""
        raise NotImplementedError

"""The one interface every heterogeneity method implements, and the registry.

scikit-learn style: ``__init__`` stores hyperparameters (and ``random_state``) only;
``fit(particles)`` learns and returns ``self``. Discrete methods implement
``predict``/``predict_proba``; continuous ones ``transform``. Methods that can produce a
volume for a particle implement ``particle_volumes`` (used by the per-particle FSC metric).

A method registers with :func:`register`; ``tomohet bench`` and the shared test suite
iterate :data:`REGISTRY` after :func:`tomohet.methods.load_all` has imported the built-in
methods (:func:`tomohet.methods.get_method` does so itself).

The defaults every method shares live here and nowhere else: the soft spherical mask
(:func:`default_mask_radius_px`, :func:`default_mask`), the device
(:func:`resolve_device`) and the seed (:func:`seed_of`, :func:`check_random_state`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.physics.fourier import soft_sphere_mask

__all__ = ["HeterogeneityMethod", "REGISTRY", "register", "ParticleSet", "default_mask_radius_px",
           "default_mask", "resolve_device", "seed_of", "check_random_state", "NotFittedError"]

ParticleSet = TiltSeriesParticles | SubtomogramParticles

REGISTRY: dict[str, type[HeterogeneityMethod]] = {}


def default_mask_radius_px(box: int) -> float:
    """Radius (pixels) of the default soft spherical mask of a ``box``^3 volume:
    ``box / 2`` less a margin of ``max(2, 0.06 box)`` pixels, so that the soft edge
    (:func:`default_mask`) stays inside the box."""
    return box / 2 - max(2.0, 0.06 * box)


def default_mask(box: int, radius_A: float | None = None, pixel_size_A: float | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The soft spherical mask (box, box, box) a method uses when given none.

    Radius ``radius_A / pixel_size_A`` when ``radius_A`` is given, else
    :func:`default_mask_radius_px`; cosine edge of ``max(2, 0.05 box)`` pixels.
    """
    if radius_A is None:
        radius = default_mask_radius_px(box)
    elif pixel_size_A is None or pixel_size_A <= 0:
        raise ValueError(f"a mask radius in A needs a positive pixel size, got {pixel_size_A}")
    else:
        radius = radius_A / pixel_size_A
    return soft_sphere_mask(box, radius, edge_px=max(2.0, 0.05 * box), device=device or "cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`; None (or "") -> CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_of(random_state: int | np.integer | None) -> int:
    """The integer seed of a method's ``random_state``.

    Unlike scikit-learn, ``None`` means seed 0, not fresh entropy: every tomohet run is
    reproducible unless a seed says otherwise (the keyed per-particle draws of
    :mod:`tomohet.data.keys` need an integer seed).
    """
    if random_state is None:
        return 0
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise ValueError(f"random_state must be an int or None, got {random_state!r}")
    return int(random_state)


def check_random_state(random_state: int | np.integer | np.random.Generator | None,
                       offset: int = 0) -> np.random.Generator:
    """A numpy Generator from ``random_state``, with scikit-learn's contract.

    An int seeds a new generator (``seed + offset``), a Generator is returned as it is
    (shared, so successive draws differ); ``None`` is seed 0 (see :func:`seed_of`).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(seed_of(random_state) + offset)


class NotFittedError(ValueError, AttributeError):
    """An output of a method asked for before ``fit`` (scikit-learn's contract: a
    ValueError and an AttributeError)."""


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
        """A CPU torch Generator seeded with ``seed_of(random_state) + offset``."""
        g = torch.Generator()
        g.manual_seed(seed_of(self.random_state) + offset)
        return g

    def _rng(self, offset: int = 0) -> np.random.Generator:
        """A numpy Generator seeded like :meth:`_generator` (None -> seed 0, as there)."""
        return check_random_state(self.random_state, offset)

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

    def _cluster_latent(self, z: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
        """-> (labels or None, cluster info) of the (N, Z) latent ``z`` from the method's
        ``cluster`` / ``n_clusters`` / ``max_clusters`` / ``random_state`` settings
        (``cluster=None``: not clustered) -- the continuous methods' one clustering step
        (:func:`tomohet.methods.clustering.cluster_latent`); they store the pair as
        ``labels_`` and ``cluster_info_``."""
        how = getattr(self, "cluster", None)
        if not how:
            return None, {}
        from tomohet.methods.clustering import cluster_latent

        res = cluster_latent(z, method=how, n_clusters=getattr(self, "n_clusters", None),
                             max_clusters=getattr(self, "max_clusters", 8),
                             seed=seed_of(getattr(self, "random_state", None)))
        return res.labels, res.info()

    def _fitted_output(self, attr: str, particles: ParticleSet | None) -> np.ndarray:
        """A copy of the per-particle fitted array ``attr`` (e.g. ``labels_``, ``latent_``).

        The contract of every ``predict``/``predict_proba``/``transform``: no argument (or
        the fitted set itself) gives the outputs of the particles ``fit`` saw; before fit
        -> :class:`NotFittedError`; a set of another size -> ValueError (tomohet methods
        do not embed new particles: fit on the set you want).
        """
        value = vars(self).get(attr)
        if value is None:
            raise NotFittedError(f"{self.name} is not fitted yet: call fit(particles) first")
        if particles is not None and particles.n_particles != len(value):
            raise ValueError(f"{self.name}: fitted on {len(value)} particles, got "
                             f"{particles.n_particles}; outputs exist only for the fitted set")
        return value.copy()

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

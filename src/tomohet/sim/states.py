"""Heterogeneity models: discrete programmable components and continuous motions.

A model draws a discrete state and continuous coordinates for every particle and renders
them, either as reference-frame volumes (the ground truth) or directly as projections:

* :class:`VolumeStates` -- K fixed volumes (from maps: each state is the sum of the
  component maps present, Kinman et al. 2025 style "programmable components"). Images
  are Fourier slices of the state's volume (:class:`~tomohet.physics.projection.VolumeProjector`).
* :class:`AtomicStates` -- an atomic model whose atoms are split into a base and
  components (chain / residue-range selections); states switch components on and off, and
  motions move atoms per particle: linear interpolation towards a second conformation,
  hinge rotation of a selection about an axis, and elastic-network normal-mode
  displacement. Projections are computed *exactly per particle*: the particle's own
  coordinates are projected analytically (:func:`~tomohet.sim.structures.project_atoms`),
  so no coordinate binning is involved and the truth is exactly what was imaged.
  ``continuous_mode="grid"`` instead snaps coordinates to ``n_grid`` values per motion
  (the truth then records the snapped values) and uses Fourier slices of one volume per
  grid point: faster for large models.

Coordinates: motion ``j`` has coordinate column ``c{j}``. Distributions are dicts:
``{"kind": "uniform", "low", "high"}``, ``{"kind": "normal", "mean", "sd"}``,
``{"kind": "beta", "a", "b"}``, ``{"kind": "bimodal", "means", "sd", "weights"}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tomohet.physics.fourier import image_to_ft
from tomohet.physics.projection import VolumeProjector
from tomohet.sim.motions import Motion
from tomohet.sim.structures import (
    AtomModel,
    atom_sigma_A,
    atoms_to_density,
    project_atoms,
    surface_component_mask,
)

__all__ = ["HeterogeneityModel", "VolumeStates", "AtomicStates", "SurfaceComponentStates",
           "exact_counts", "sample_distribution"]


def exact_counts(fractions: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``fractions * n`` (largest remainders)."""
    f = np.asarray(fractions, dtype=np.float64)
    f = f / f.sum()
    raw = f * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def sample_states(fractions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """States with exactly :func:`exact_counts` members each, in random order -> (N,)."""
    counts = exact_counts(fractions, n)
    labels = np.repeat(np.arange(len(counts)), counts)
    return rng.permutation(labels)


def sample_distribution(spec: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from a distribution dict (see module docstring) -> (N,)."""
    kind = spec.get("kind", "uniform")
    if kind == "uniform":
        return rng.uniform(spec.get("low", 0.0), spec.get("high", 1.0), n)
    if kind == "normal":
        return rng.normal(spec.get("mean", 0.0), spec.get("sd", 1.0), n)
    if kind == "beta":
        return rng.beta(spec.get("a", 2.0), spec.get("b", 2.0), n)
    if kind == "bimodal":
        means = np.asarray(spec.get("means", [0.2, 0.8]), dtype=np.float64)
        weights = np.asarray(spec.get("weights", [0.5, 0.5]), dtype=np.float64)
        which = rng.choice(len(means), size=n, p=weights / weights.sum())
        return rng.normal(means[which], spec.get("sd", 0.08))
    raise ValueError(f"unknown distribution kind {kind!r}")


class HeterogeneityModel:
    """Interface: K discrete states x C continuous coordinates.

    Attributes: ``state_names`` (K,), ``fractions`` (K,), ``coord_names`` (C,), ``box``,
    ``pixel_size_A``, ``discrete`` (False for a single state with motions: truth state -1).
    """

    state_names: list[str]
    fractions: np.ndarray
    coord_names: list[str]
    box: int
    pixel_size_A: float
    discrete: bool = True

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """States (N,) int and coordinates (N, C) float64 for ``n`` particles."""
        raise NotImplementedError

    def volumes(self, state: np.ndarray, coords: np.ndarray) -> torch.Tensor:
        """Reference-frame volumes of particles (B,), (B, C) -> (B, D, D, D)."""
        raise NotImplementedError

    def state_volumes(self) -> torch.Tensor:
        """One volume per state at the reference coordinates -> (K, D, D, D)."""
        raise NotImplementedError

    def project(self, state: np.ndarray, coords: np.ndarray,
                rotations: torch.Tensor) -> torch.Tensor:
        """Transforms of projections, rfft layout: (B,), (B, C), (B, T, 3, 3) -> (B, T, D, Dh)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"type": type(self).__name__, "states": list(self.state_names),
                "fractions": [float(f) for f in self.fractions],
                "coordinates": list(self.coord_names)}


def _grouped_slices(keys: np.ndarray, volume_of, rotations: torch.Tensor,
                    cache: dict | None = None) -> torch.Tensor:
    """Central slices, one projector per distinct key: (B,) keys, (B, T, 3, 3) -> (B, T, D, Dh)."""
    out = None
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        proj = cache.get(int(key)) if cache is not None else None
        if proj is None:
            proj = VolumeProjector(volume_of(key)[None])
            if cache is not None:
                cache[int(key)] = proj
        sl = proj.slices(rotations[sel])[0]
        if out is None:
            out = torch.zeros((len(keys), *sl.shape[1:]), dtype=sl.dtype)
        out[torch.as_tensor(sel)] = sl
    assert out is not None
    return out


class VolumeStates(HeterogeneityModel):
    """K fixed volumes (K, D, D, D) with population ``fractions`` (K,)."""

    def __init__(self, volumes: torch.Tensor, fractions, names: list[str] | None = None,
                 pixel_size_A: float = 1.0) -> None:
        self._volumes = torch.as_tensor(volumes, dtype=torch.float32)
        k = self._volumes.shape[0]
        self.fractions = np.asarray(fractions, dtype=np.float64)
        if len(self.fractions) != k:
            raise ValueError(f"{k} volumes but {len(self.fractions)} fractions")
        self.fractions = self.fractions / self.fractions.sum()
        self.state_names = names or [f"state{i}" for i in range(k)]
        self.coord_names = []
        self.box = int(self._volumes.shape[-1])
        self.pixel_size_A = float(pixel_size_A)
        self._projectors: dict[int, VolumeProjector] = {}

    def sample(self, n, rng):
        return sample_states(self.fractions, n, rng), np.zeros((n, 0))

    def volumes(self, state, coords):
        return self._volumes[torch.as_tensor(np.asarray(state, dtype=np.int64))]

    def state_volumes(self):
        return self._volumes

    def project(self, state, coords, rotations):
        return _grouped_slices(np.asarray(state), lambda k: self._volumes[int(k)], rotations,
                               self._projectors)


class SurfaceComponentStates(VolumeStates):
    """A complex with removable components cut from its own density.

    ``volume`` (D, D, D) is the full complex; component ``p`` is the compact surface region
    :func:`~tomohet.sim.structures.surface_component_mask` along ``directions[p]`` holding
    ``mass_fractions[p]`` of the full complex's mass (taken in order, each excluding the
    earlier ones). With soft masks ``m_p``: component ``p`` = ``volume * m_p``, base =
    ``volume * (1 - sum_p m_p)``, state ``k`` = base + the components ``present[k]`` (K, P)
    marks, so states differ only where the masks are non-zero and the state with every
    component is ``volume``. ``component_masks`` (P, D, D, D).
    """

    def __init__(self, volume: torch.Tensor, directions, mass_fractions, present,
                 fractions, names: list[str] | None = None, pixel_size_A: float = 1.0,
                 component_names: list[str] | None = None, edge_px: float = 1.0) -> None:
        full = torch.as_tensor(volume, dtype=torch.float32).clamp_min(0)
        taken = torch.zeros_like(full)
        masks = []
        for direction, f in zip(directions, mass_fractions, strict=True):
            m = surface_component_mask(full, direction, float(f), taken, edge_px)
            masks.append(m)
            taken = taken + m
        self.component_masks = torch.stack(masks) if masks else torch.zeros((0, *full.shape))
        self.component_names = component_names or [f"comp{p}" for p in range(len(masks))]
        self.mass_fractions = np.asarray(mass_fractions, dtype=np.float64)
        present_t = torch.as_tensor(np.asarray(present, dtype=np.float32)).reshape(
            -1, len(masks))
        comps = full[None] * self.component_masks  # (P, D, D, D)
        base = full * (1 - self.component_masks.sum(0))
        vols = base[None] + torch.einsum("kp,pzyx->kzyx", present_t, comps)
        super().__init__(vols, fractions, names, pixel_size_A)


@dataclass
class _Grid:
    """Coordinate snapping for ``continuous_mode="grid"``: n values per motion over [lo, hi]."""

    lo: np.ndarray  # (C,)
    hi: np.ndarray  # (C,)
    n: int

    def snap(self, coords: np.ndarray) -> np.ndarray:
        step = (self.hi - self.lo) / max(self.n - 1, 1)
        idx = np.clip(np.round((coords - self.lo) / np.where(step > 0, step, 1)), 0, self.n - 1)
        return self.lo + idx * step

    def key(self, state: np.ndarray, coords: np.ndarray) -> np.ndarray:
        step = (self.hi - self.lo) / max(self.n - 1, 1)
        idx = np.round((coords - self.lo) / np.where(step > 0, step, 1)).astype(np.int64)
        key = np.asarray(state, dtype=np.int64)
        for j in range(coords.shape[1]):
            key = key * self.n + np.clip(idx[:, j], 0, self.n - 1)
        return key


class AtomicStates(HeterogeneityModel):
    """An atomic model with components (on/off per state) and continuous motions.

    ``component_masks`` (P, M) bool: atoms of each component (atoms in none form the
    base, always present); ``state_components`` (K, P) bool; ``motions`` applied in order,
    motion j driven by coordinate column j drawn from ``distributions[j]``.
    With ``centre`` the model is first centred on its centre of mass.
    """

    def __init__(
        self, model: AtomModel, box: int, pixel_size_A: float, resolution_A: float,
        component_masks: np.ndarray | None = None, state_components: np.ndarray | None = None,
        fractions=None, state_names: list[str] | None = None,
        motions: list[Motion] | None = None, distributions: list[dict] | None = None,
        continuous_mode: str = "exact", n_grid: int = 41, batch_atoms: int = 4096,
        centre: bool = True,
    ) -> None:
        self.model = model.translated(-model.centre_of_mass_A()) if centre else model
        m = len(self.model)
        self.box, self.pixel_size_A = int(box), float(pixel_size_A)
        self.component_masks = (np.zeros((0, m), bool) if component_masks is None
                                else np.asarray(component_masks, bool))
        p = self.component_masks.shape[0]
        self.state_components = (np.ones((1, p), bool) if state_components is None
                                 else np.asarray(state_components, bool))
        k = self.state_components.shape[0]
        self.fractions = np.ones(k) / k if fractions is None else np.asarray(fractions, float)
        self.fractions = self.fractions / self.fractions.sum()
        self.state_names = state_names or [f"state{i}" for i in range(k)]
        self.motions = list(motions or [])
        self.distributions = list(distributions or [{"kind": "uniform"}] * len(self.motions))
        self.coord_names = [f"c{j}" for j in range(len(self.motions))]
        self.discrete = k > 1 or not self.motions
        self.sigma_A = torch.as_tensor(atom_sigma_A(self.model, resolution_A), dtype=torch.float32)
        self._xyz = torch.as_tensor(self.model.xyz_A, dtype=torch.float32)
        self._w = torch.as_tensor(self.model.weight, dtype=torch.float32)
        base = np.asarray(~self.component_masks.any(0), dtype=bool)
        used = self.state_components.astype(np.int64) @ self.component_masks.astype(np.int64)
        present = np.asarray(used > 0) | base[None, :]
        self._state_weight = self._w[None] * torch.as_tensor(present, dtype=torch.float32)
        if continuous_mode not in ("exact", "grid"):
            raise ValueError("continuous_mode must be 'exact' or 'grid'")
        self.continuous_mode = continuous_mode
        self.grid = self._make_grid(n_grid) if continuous_mode == "grid" else None
        self.batch_atoms = batch_atoms
        self._projectors: dict[int, VolumeProjector] = {}

    def _make_grid(self, n: int) -> _Grid:
        """Grid over each coordinate's range: uniform bounds, else the 0.1-99.9% quantiles."""
        rng = np.random.default_rng(0)
        lo, hi = [], []
        for d in self.distributions:
            if d.get("kind", "uniform") == "uniform":
                lo.append(float(d.get("low", 0.0)))
                hi.append(float(d.get("high", 1.0)))
            else:
                v = sample_distribution(d, 20001, rng)
                lo.append(float(np.quantile(v, 0.001)))
                hi.append(float(np.quantile(v, 0.999)))
        return _Grid(np.array(lo), np.array(hi), n)

    def sample(self, n, rng):
        state = sample_states(self.fractions, n, rng)
        coords = np.zeros((n, len(self.motions)))
        for j, dist in enumerate(self.distributions):
            coords[:, j] = sample_distribution(dist, n, rng)
        if self.grid is not None:
            coords = self.grid.snap(coords)
        return state, coords

    def reference_coords(self) -> np.ndarray:
        """Coordinates of :meth:`state_volumes`: each distribution's median -> (C,)."""
        rng = np.random.default_rng(0)
        return np.array([np.median(sample_distribution(d, 20001, rng))
                         for d in self.distributions])

    def coordinates(self, coords: np.ndarray) -> torch.Tensor:
        """Atom positions of particles with coordinates (B, C) -> (B, M, 3) Angstrom."""
        c = torch.as_tensor(np.asarray(coords, dtype=np.float64), dtype=torch.float32)
        xyz = self._xyz[None].expand(c.shape[0], -1, -1)
        for j, motion in enumerate(self.motions):
            xyz = motion.apply(xyz, c[:, j])
        return xyz

    def weights(self, state: np.ndarray) -> torch.Tensor:
        return self._state_weight[torch.as_tensor(np.asarray(state, dtype=np.int64))]

    def volumes(self, state, coords):
        return atoms_to_density(self.coordinates(coords), self.weights(state), self.sigma_A,
                                self.box, self.pixel_size_A, self.batch_atoms)

    def state_volumes(self):
        k = len(self.state_names)
        ref = np.repeat(self.reference_coords()[None], k, 0)
        return self.volumes(np.arange(k), ref)

    def project(self, state, coords, rotations):
        state = np.asarray(state)
        if self.grid is None:
            images = project_atoms(self.coordinates(coords), self.weights(state), self.sigma_A,
                                   rotations, self.box, self.pixel_size_A)
            return image_to_ft(images)
        keys = self.grid.key(state, coords)
        first = {int(k): i for i, k in reversed(list(enumerate(keys)))}

        def volume_of(key):
            i = first[int(key)]
            return self.volumes(state[i : i + 1], coords[i : i + 1])[0]

        return _grouped_slices(keys, volume_of, rotations, self._projectors)

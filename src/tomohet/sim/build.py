"""Heterogeneity models from JSON-able specs (the ``structure`` field of a config).

``{"kind": "maps", "components": {NAME: {"map": MAP, "contact_with": OTHER,
"direction": [x, y, z], "shift_A": [x, y, z]}}, "states": [{"name", "components",
"fraction"}]}`` -- each state is the sum of its component maps. A component with
``contact_with`` is pushed from the other's centre along ``direction`` until at most
``overlap`` (default 8%) of its density lies inside the other's envelope: the shipped
subunit maps (e.g. 4v4r_50S / 4v4r_30S) are each centred on their own centre of mass,
so this builds a 70S-*like* assembly with the two subunits in contact, not the native
interface. The whole assembly is then centred on its centre of mass.

``{"kind": "atoms", "model": NAME, "select": {"chains": [...], "residues": [...]},
"beads": "atom" | "residue", "resolution_A": R,
"components": {NAME: {"chains": [...], "residues": [[chain|None, first, last]]}},
"states": [...], "motions": [{motion spec..., "distribution": {...}}],
"continuous_mode": "exact" | "grid", "n_grid": 41}`` -- see :mod:`tomohet.sim.states`
and :mod:`tomohet.sim.motions`. Without ``states`` there is one state with every
component.

``{"kind": "surface", "map": MAP, "components": {NAME: {"direction": [x, y, z],
"fraction": F}}, "states": [...], "edge_px": 1.0}`` -- removable components cut from the
map's own density: compact surface regions of F of its mass (see
:class:`tomohet.sim.states.SurfaceComponentStates`).

``{"kind": "points", "points_A": [[x, y, z], ...], "weights": [...], "sigma_A": s}`` --
Gaussian blobs (tests, toy models).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from tomohet.sim.motions import build_motion
from tomohet.sim.states import (
    AtomicStates,
    HeterogeneityModel,
    SurfaceComponentStates,
    VolumeStates,
)
from tomohet.sim.structures import AtomModel, load_map, read_model

__all__ = ["build_model", "particle_diameter_A"]


@lru_cache(maxsize=16)
def _read_model_cached(name: str) -> AtomModel:
    return read_model(name)


def _envelope(vol: torch.Tensor, level: float = 0.05) -> torch.Tensor:
    return vol > level * vol.max()


def _contact_shift_px(fixed: torch.Tensor, moving: torch.Tensor, direction: np.ndarray,
                      overlap: float) -> float:
    """Smallest shift (pixels) along ``direction`` leaving <= ``overlap`` of ``moving`` inside."""
    env = _envelope(fixed).float()
    total = moving.sum()
    d = direction / np.linalg.norm(direction)
    box = fixed.shape[-1]
    for s in np.arange(0.0, box, 0.5):
        shift = tuple(int(round(v)) for v in (s * d)[::-1])  # (z, y, x)
        moved = torch.roll(moving, shifts=shift, dims=(0, 1, 2))
        if float((moved * env).sum() / total) <= overlap:
            return float(s)
    raise ValueError("components cannot be brought out of contact inside the box")


def _map_components(spec: dict, box: int, px: float) -> dict[str, torch.Tensor]:
    comps = spec["components"]
    shifts: dict[str, np.ndarray] = {}
    for name, c in comps.items():
        shifts[name] = np.asarray(c.get("shift_A", (0.0, 0.0, 0.0)), dtype=np.float64)
        if c.get("contact_with"):
            other = c["contact_with"]
            fixed = load_map(comps[other]["map"], px, box, shift_A=shifts[other])
            moving = load_map(c["map"], px, box, shift_A=shifts[other])
            direction = np.asarray(c.get("direction", (1.0, 0.0, 0.0)), dtype=np.float64)
            s = _contact_shift_px(fixed, moving, direction, float(c.get("overlap", 0.08)))
            shifts[name] = shifts[other] + s * px * direction / np.linalg.norm(direction)
    vols = {n: load_map(c["map"], px, box, shift_A=shifts[n]) for n, c in comps.items()}
    # centre the full assembly on its centre of mass
    full = torch.stack(list(vols.values())).sum(0)
    grid = (torch.arange(box, dtype=torch.float64) - box // 2) * px
    w = full.double() / full.sum()
    com = np.array([float((w.sum((0, 1)) * grid).sum()), float((w.sum((0, 2)) * grid).sum()),
                    float((w.sum((1, 2)) * grid).sum())])  # x, y, z
    if np.linalg.norm(com) > 0.25 * px:
        vols = {n: load_map(c["map"], px, box, shift_A=shifts[n] - com)
                for n, c in comps.items()}
    return vols


def _state_table(spec: dict, names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """State names (K,), components present (K, P) bool, fractions (K,)."""
    states = spec.get("states") or [{"name": "all", "components": names, "fraction": 1.0}]
    present = np.array([[n in s["components"] for n in names] for s in states], dtype=bool)
    missing = {c for s in states for c in s["components"]} - set(names)
    if missing:
        raise ValueError(f"states use unknown components: {sorted(missing)}")
    fractions = np.array([float(s.get("fraction", 1.0)) for s in states])
    return [s["name"] for s in states], present.reshape(len(states), len(names)), fractions


def _build_maps(spec: dict, box: int, px: float) -> VolumeStates:
    vols = _map_components(spec, box, px)
    names = list(vols)
    state_names, present, fractions = _state_table(spec, names)
    stack = torch.stack([vols[n] for n in names])  # (P, D, D, D)
    volumes = torch.einsum("kp,pzyx->kzyx", torch.as_tensor(present, dtype=torch.float32),
                           stack)
    return VolumeStates(volumes, fractions, state_names, px)


def _build_atoms(spec: dict, box: int, px: float) -> AtomicStates:
    full = _read_model_cached(str(spec["model"]))
    if spec.get("select"):
        sel = spec["select"]
        full = full.subset(full.select(sel.get("chains"), [tuple(r) for r in sel["residues"]]
                                       if sel.get("residues") else None))
    model = full.coarse_grained() if spec.get("beads", "atom") == "residue" else full

    def loader(name: str) -> AtomModel:
        return _read_model_cached(str(name))

    comp_specs = spec.get("components", {})
    names = list(comp_specs)
    masks = np.stack([model.select(c.get("chains"),
                                   [tuple(r) for r in c["residues"]] if c.get("residues")
                                   else None)
                      for c in comp_specs.values()]) if names else np.zeros((0, len(model)), bool)
    state_names, present, fractions = _state_table(spec, names)
    centred = model.translated(-model.centre_of_mass_A())
    full_c = full.translated(-model.centre_of_mass_A())
    motions = [build_motion(m, centred, full_c, loader) for m in spec.get("motions", [])]
    dists = [m.get("distribution", {"kind": "uniform"}) for m in spec.get("motions", [])]
    return AtomicStates(
        centred, box, px, float(spec.get("resolution_A", 2.0 * px)), masks, present,
        fractions, state_names, motions, dists, spec.get("continuous_mode", "exact"),
        int(spec.get("n_grid", 41)))


def _build_surface(spec: dict, box: int, px: float) -> SurfaceComponentStates:
    comps = spec["components"]
    names = list(comps)
    state_names, present, fractions = _state_table(spec, names)
    return SurfaceComponentStates(
        load_map(spec["map"], px, box), [c["direction"] for c in comps.values()],
        [float(c["fraction"]) for c in comps.values()], present, fractions, state_names, px,
        names, float(spec.get("edge_px", 1.0)))


def _build_points(spec: dict, box: int, px: float) -> AtomicStates:
    pts = np.asarray(spec["points_A"], dtype=np.float64).reshape(-1, 3)
    w = np.asarray(spec.get("weights", np.ones(len(pts))), dtype=np.float64)
    sigma = float(spec.get("sigma_A", 2.0 * px))
    n = len(pts)
    model = AtomModel(pts, w, np.array(["A"] * n, dtype=object), np.arange(1, n + 1),
                      np.array(["PT"] * n, dtype=object), np.full(n, sigma))
    return AtomicStates(model, box, px, resolution_A=0.0, centre=bool(spec.get("centre", False)))


def build_model(spec: dict, box: int, pixel_size_A: float) -> HeterogeneityModel:
    """A heterogeneity model from a spec (see module docstring)."""
    kind = spec.get("kind")
    if kind == "maps":
        return _build_maps(spec, box, pixel_size_A)
    if kind == "atoms":
        return _build_atoms(spec, box, pixel_size_A)
    if kind == "points":
        return _build_points(spec, box, pixel_size_A)
    if kind == "surface":
        return _build_surface(spec, box, pixel_size_A)
    raise ValueError(f"unknown structure kind {kind!r} (maps, atoms, points, surface)")


def particle_diameter_A(volumes: torch.Tensor, pixel_size_A: float) -> float:
    """Largest sphere-equivalent diameter ``2 sqrt(5/3) Rg`` of volumes (K, D, D, D).

    ``Rg`` is the radius of gyration about the box centre; for a uniform sphere this is
    its diameter. Used as the default minimum distance between particles.
    """
    box = volumes.shape[-1]
    c = (torch.arange(box, dtype=torch.float64) - box // 2) * pixel_size_A
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r2 = x**2 + y**2 + z**2
    w = volumes.double().clamp_min(0)
    rg2 = (w * r2).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-12)
    return float(2.0 * np.sqrt(5.0 / 3.0) * rg2.max().sqrt())

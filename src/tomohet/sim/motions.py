"""Continuous motions of atomic models, each driven by one scalar coordinate per particle.

* :class:`Interpolation` -- ``x(c) = x0 + c * (x1 - x0)`` towards a second conformation
  whose atoms are matched by (chain, residue number, atom name); c = 0 is the model,
  c = 1 the target.
* :class:`Hinge` -- rigid rotation of a selection by ``c * max_angle_deg`` about an axis
  through two atoms (or residues) taken from the *current* coordinates, so a hinge can
  follow an earlier interpolation.
* :class:`NormalMode` -- displacement along one low-frequency mode of an anisotropic
  network model (ANM, C-alpha-like beads = residue centres, cutoff ``cutoff_A``); every
  atom moves with its residue. The mode is scaled so that c = 1 gives an RMS atomic
  displacement of ``amplitude_A``.

All act on batches: ``apply(xyz (B, M, 3), c (B,)) -> (B, M, 3)``.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.elastic import anm_modes, superpose
from tomohet.sim.structures import AtomModel

__all__ = ["Motion", "Interpolation", "Hinge", "NormalMode", "build_motion", "anm_modes",
           "superpose"]


class Motion:
    spec: dict

    def apply(self, xyz: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Interpolation(Motion):
    """Linear interpolation by a displacement (M, 3) = target - reference."""

    def __init__(self, displacement_A: np.ndarray, spec: dict | None = None) -> None:
        self.displacement = torch.as_tensor(displacement_A, dtype=torch.float32)
        self.spec = spec or {"kind": "interpolate"}

    def apply(self, xyz, c):
        return xyz + c[:, None, None] * self.displacement[None]


def rotate_about_axis(points: torch.Tensor, point: torch.Tensor, direction: torch.Tensor,
                      angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotate (B, M, 3) points by (B,) angles about axes through (B, 3) along (B, 3)."""
    k = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    a = torch.deg2rad(angle_deg)[:, None, None]
    v = points - point[:, None]
    kk = k[:, None].expand_as(v)
    cross = torch.cross(kk, v, dim=-1)
    dot = (kk * v).sum(-1, keepdim=True)
    rot = v * torch.cos(a) + cross * torch.sin(a) + kk * dot * (1 - torch.cos(a))
    return rot + point[:, None]


class Hinge(Motion):
    """Rotate atoms ``moving`` (M,) bool by ``c * max_angle_deg`` about the axis atom a -> b."""

    def __init__(self, moving: np.ndarray, axis_atoms: tuple[int, int], max_angle_deg: float,
                 spec: dict | None = None) -> None:
        self.moving = torch.as_tensor(np.asarray(moving, bool))
        self.axis_atoms = (int(axis_atoms[0]), int(axis_atoms[1]))
        self.max_angle_deg = float(max_angle_deg)
        self.spec = spec or {"kind": "hinge"}

    def apply(self, xyz, c):
        a, b = xyz[:, self.axis_atoms[0]], xyz[:, self.axis_atoms[1]]
        moved = rotate_about_axis(xyz[:, self.moving], a, b - a, c * self.max_angle_deg)
        out = xyz.clone()
        out[:, self.moving] = moved
        return out


class NormalMode(Motion):
    """Displacement along a fixed mode (M, 3), normalised to RMS 1 A and scaled by amplitude."""

    def __init__(self, mode: np.ndarray, amplitude_A: float, spec: dict | None = None) -> None:
        rms = np.sqrt((np.asarray(mode) ** 2).sum(1).mean())
        self.displacement = torch.as_tensor(mode / max(rms, 1e-12) * amplitude_A,
                                            dtype=torch.float32)
        self.spec = spec or {"kind": "normal_mode"}

    def apply(self, xyz, c):
        return xyz + c[:, None, None] * self.displacement[None]


def _residue_atom(model: AtomModel, chain: str | None, resnum: int) -> int:
    sel = model.resnum == int(resnum)
    if chain is not None:
        sel &= model.chain == chain
    idx = np.nonzero(sel)[0]
    if not len(idx):
        raise ValueError(f"residue {chain}:{resnum} not in the model")
    ca = idx[model.atom_name[idx] == "CA"]
    if len(ca):
        return int(ca[0])
    # bead models: the residue's bead; otherwise the atom nearest the residue centre
    centre = model.xyz_A[idx].mean(0)
    return int(idx[np.argmin(((model.xyz_A[idx] - centre) ** 2).sum(1))])


def build_motion(spec: dict, model: AtomModel, full_model: AtomModel | None = None,
                 load_model=None) -> Motion:
    """A motion from a JSON-able spec on ``model`` (the atoms as simulated).

    Specs: ``{"kind": "interpolate", "target": NAME}``;
    ``{"kind": "hinge", "residues": [[chain, first, last], ...], "axis_residues":
    [[chain, resnum], [chain, resnum]], "max_angle_deg": 30}``;
    ``{"kind": "normal_mode", "mode": 0, "amplitude_A": 4.0, "cutoff_A": 15.0}``.
    ``load_model(name) -> AtomModel`` reads targets; ``full_model`` is the all-atom model
    when ``model`` is coarse-grained (targets are coarse-grained the same way).
    """
    kind = spec.get("kind")
    if kind == "interpolate":
        target = load_model(spec["target"])
        if full_model is not None and len(full_model) != len(model):
            target = target.coarse_grained()
        i, j = model.match(target)
        if len(i) != len(model):
            raise ValueError(f"interpolation target matches only {len(i)}/{len(model)} atoms")
        align = np.ones(len(i), bool)
        if spec.get("align_residues"):
            align = model.select(residues=[tuple(r) for r in spec["align_residues"]])[i]
        moved = superpose(target.xyz_A[j], model.xyz_A[i], align, model.weight[i])
        disp = np.zeros_like(model.xyz_A)
        disp[i] = moved - model.xyz_A[i]
        return Interpolation(disp, spec)
    if kind == "hinge":
        moving = model.select(residues=[tuple(r) for r in spec["residues"]])
        ax = [_residue_atom(model, c, r) for c, r in spec["axis_residues"]]
        return Hinge(moving, (ax[0], ax[1]), spec.get("max_angle_deg", 30.0), spec)
    if kind == "normal_mode":
        beads = model if full_model is not None and len(full_model) != len(model) \
            else model.coarse_grained()
        modes = anm_modes(beads.xyz_A, int(spec.get("mode", 0)) + 1,
                          float(spec.get("cutoff_A", 15.0)))
        bead_mode = modes[-1]
        keys = {k: n for n, k in enumerate(zip(beads.chain.tolist(), beads.resnum.tolist(),
                                               strict=True))}
        owner = np.array([keys[k] for k in zip(model.chain.tolist(), model.resnum.tolist(),
                                               strict=True)])
        return NormalMode(bead_mode[owner], float(spec.get("amplitude_A", 4.0)), spec)
    raise ValueError(f"unknown motion kind {kind!r}")

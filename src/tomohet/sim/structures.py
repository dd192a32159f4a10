"""Shipped structures and their conversion to density on a simulation grid.

Two kinds of input:

* density maps (MRC, optionally gzipped): resampled to the target pixel size and box by
  cubic interpolation after a Fourier low-pass at the target Nyquist frequency (when
  coarsening), centred on their centre of mass;
* atomic models (PDB/mmCIF via gemmi): atoms become isotropic 3D Gaussians of
  ``sigma = 0.225 * resolution_A`` (Chimera ``molmap``), weighted by their electron count.

Atom densities are *integrated over each voxel* (erf differences along each axis), so the
2D projection of :func:`atoms_to_density` summed along z equals :func:`project_atoms`
exactly for atoms inside the box, whatever the Gaussian width. Grid conventions follow
:mod:`tomohet.physics.fourier`: voxel ``[z, y, x]`` sits at ``(index - D // 2) * pixel``
Angstrom from the box centre, and a rotation ``R`` puts reference point ``p`` at image
position ``(R @ p)[:2]`` (x, y).

Density values are in arbitrary units (electrons per voxel for atoms); simulations fix the
noise level through the SNR, so only relative densities matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import mrcfile
import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "STRUCTURE_DIR", "list_structures", "structure_path", "read_map", "load_map",
    "AtomModel", "read_model", "atoms_to_density", "project_atoms", "atom_sigma_A",
    "model_density", "surface_component_mask",
]

STRUCTURE_DIR = Path(__file__).resolve().parent / "structures"
_MAP_SUFFIXES = (".mrc.gz", ".mrc", ".map", ".map.gz")
_MODEL_SUFFIXES = (".pdb.gz", ".pdb", ".cif.gz", ".cif", ".mmcif", ".ent.gz", ".ent")
_ELECTRONS = {"H": 1, "C": 6, "N": 7, "O": 8, "P": 15, "S": 16, "SE": 34, "MG": 12,
              "ZN": 30, "FE": 26, "CA": 20, "NA": 11, "K": 19, "CL": 17, "MN": 25}


def list_structures() -> dict[str, str]:
    """Shipped structures: name -> ``"map"`` or ``"model"``."""
    out: dict[str, str] = {}
    for p in sorted(STRUCTURE_DIR.iterdir()):
        for suffix in _MAP_SUFFIXES + _MODEL_SUFFIXES:
            if p.name.endswith(suffix):
                out[p.name[: -len(suffix)]] = "map" if suffix in _MAP_SUFFIXES else "model"
                break
    return out


def structure_path(name: str | Path) -> Path:
    """A shipped structure's file (by name, e.g. ``"4v4r_50S"``) or an existing path."""
    p = Path(name)
    if p.exists():
        return p
    for suffix in _MAP_SUFFIXES + _MODEL_SUFFIXES:
        q = STRUCTURE_DIR / f"{name}{suffix}"
        if q.exists():
            return q
    known = ", ".join(list_structures())
    raise FileNotFoundError(f"no structure {name!r}: not a file and not shipped ({known})")


# --------------------------------------------------------------------------- maps
def read_map(name: str | Path) -> tuple[np.ndarray, float]:
    """A map's density (Z, Y, X) float32 and its voxel size in Angstrom."""
    path = structure_path(name)
    with mrcfile.open(path, permissive=True) as m:
        data = np.asarray(m.data, dtype=np.float32).copy()
        voxel = float(m.voxel_size.x) or 1.0
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D map, got shape {data.shape}")
    return data, voxel


def _lowpass(vol: np.ndarray, cutoff_per_voxel: float) -> np.ndarray:
    """Raised-cosine low-pass (width 10% of the cutoff) in cycles per voxel."""
    ks = [np.fft.fftfreq(n) for n in vol.shape[:2]] + [np.fft.rfftfreq(vol.shape[2])]
    kz, ky, kx = np.meshgrid(*ks, indexing="ij")
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    edge = np.clip((k - 0.9 * cutoff_per_voxel) / (0.1 * cutoff_per_voxel), 0, 1)
    filt = 0.5 * (1 + np.cos(np.pi * edge))
    return np.fft.irfftn(np.fft.rfftn(vol) * filt, s=vol.shape, axes=(0, 1, 2)).astype(np.float32)


def load_map(
    name: str | Path,
    pixel_size_A: float,
    box: int,
    centre: bool = True,
    shift_A: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
) -> torch.Tensor:
    """A map resampled onto a ``box``^3 grid of ``pixel_size_A`` -> (D, D, D) float32.

    ``centre`` moves the centre of mass to the box centre first; ``shift_A`` (x, y, z) then
    moves the density by that many Angstrom (used to place components of an assembly).
    """
    data, voxel = read_map(name)
    if pixel_size_A > voxel * 1.001:
        data = _lowpass(data, 0.5 * voxel / pixel_size_A)
    origin = np.array([s // 2 for s in data.shape], dtype=np.float64)  # (z, y, x) index
    com = np.zeros(3)
    if centre:
        com = np.array(ndimage.center_of_mass(np.clip(data, 0, None))) - origin  # voxels
    c = (np.arange(box) - box // 2) * pixel_size_A
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    shift_zyx = np.asarray(shift_A, dtype=np.float64)[::-1]
    coords = [
        (g - s) / voxel + m + o
        for g, s, m, o in zip((z, y, x), shift_zyx, com, origin, strict=True)
    ]
    out = ndimage.map_coordinates(data, coords, order=3, mode="constant", cval=0.0)
    return torch.from_numpy(np.clip(out, 0, None).astype(np.float32))


# --------------------------------------------------------------------------- atoms
@dataclass
class AtomModel:
    """Atoms (or coarse-grained beads) of one model. M = number of atoms.

    xyz_A (M, 3) x, y, z in Angstrom; weight (M,) electrons; extra_sigma_A (M,) intrinsic
    width added in quadrature to the resolution width (0 for atoms, the residue's spread
    for residue beads); chain, atom_name (M,) str; resnum (M,) int.
    """

    xyz_A: np.ndarray
    weight: np.ndarray
    chain: np.ndarray
    resnum: np.ndarray
    atom_name: np.ndarray
    extra_sigma_A: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if len(self.extra_sigma_A) != len(self.weight):
            self.extra_sigma_A = np.zeros(len(self.weight))

    def __len__(self) -> int:
        return len(self.weight)

    def select(
        self, chains: list[str] | None = None,
        residues: list[tuple[str | None, int, int]] | None = None,
    ) -> np.ndarray:
        """Atoms in ``chains`` and in any ``(chain or None, first, last)`` range -> (M,) bool."""
        keep = np.ones(len(self), dtype=bool)
        if chains is not None:
            keep &= np.isin(self.chain, list(chains))
        if residues is not None:
            inside = np.zeros(len(self), dtype=bool)
            for chain, first, last in residues:
                r = (self.resnum >= int(first)) & (self.resnum <= int(last))
                if chain is not None:
                    r &= self.chain == chain
                inside |= r
            keep &= inside
        return keep

    def subset(self, mask: np.ndarray) -> AtomModel:
        return AtomModel(self.xyz_A[mask], self.weight[mask], self.chain[mask],
                         self.resnum[mask], self.atom_name[mask], self.extra_sigma_A[mask])

    def centre_of_mass_A(self) -> np.ndarray:
        return (self.xyz_A * self.weight[:, None]).sum(0) / self.weight.sum()

    def translated(self, shift_A: np.ndarray) -> AtomModel:
        return replace(self, xyz_A=self.xyz_A + np.asarray(shift_A)[None])

    def keys(self) -> list[tuple[str, int, str]]:
        return list(zip(self.chain.tolist(), self.resnum.tolist(), self.atom_name.tolist(),
                        strict=True))

    def match(self, other: AtomModel) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(i, j)`` of atoms common to both models, matched by (chain, resnum, name)."""
        lookup = {k: j for j, k in enumerate(other.keys())}
        pairs = [(i, lookup[k]) for i, k in enumerate(self.keys()) if k in lookup]
        if not pairs:
            raise ValueError("the two models share no (chain, residue number, atom name)")
        i, j = np.array(pairs, dtype=np.int64).T
        return i, j

    def coarse_grained(self) -> AtomModel:
        """One bead per residue at its centre of mass, carrying the residue's electrons.

        A bead's ``extra_sigma_A`` is the residue's radius of gyration / sqrt(3), so its
        Gaussian has the residue's second moment.
        """
        keys = list(zip(self.chain.tolist(), self.resnum.tolist(), strict=True))
        uniq = {k: n for n, k in enumerate(dict.fromkeys(keys))}
        group = np.array([uniq[k] for k in keys])
        n = len(uniq)
        w = np.bincount(group, self.weight, n)
        xyz = np.stack([np.bincount(group, self.weight * self.xyz_A[:, a], n) for a in range(3)],
                       1) / w[:, None]
        d2 = ((self.xyz_A - xyz[group]) ** 2).sum(1)
        rg2 = np.bincount(group, self.weight * d2, n) / w
        first = np.array([keys.index(k) for k in uniq])
        return AtomModel(xyz, w, self.chain[first], self.resnum[first],
                         np.array(["BEAD"] * n, dtype=object), np.sqrt(rg2 / 3))


def _element_of(atom_name: str, residue_is_polymer: bool, element: str) -> str:
    if residue_is_polymer:  # PDB/CHARMM atom names start with the element in polymers
        letters = atom_name.lstrip("0123456789")
        return letters[:1].upper() if letters else "C"
    return element.upper() if element.upper() in _ELECTRONS else "C"


def read_model(name: str | Path) -> AtomModel:
    """First model of a PDB/mmCIF file (shipped name or path) as an :class:`AtomModel`.

    Elements of standard residues are taken from the atom names (robust to files whose
    element column is empty, e.g. CHARMM output); the weight is the electron count.
    """
    import gemmi

    path = structure_path(name)
    st = gemmi.read_structure(str(path))
    st.remove_alternative_conformations()
    xyz, w, chain, resnum, names = [], [], [], [], []
    for ch in st[0]:
        for res in ch:
            info = gemmi.find_tabulated_residue(res.name)
            polymer = info is not None and (info.is_amino_acid() or info.is_nucleic_acid())
            for atom in res:
                el = _element_of(atom.name, polymer, atom.element.name)
                xyz.append(atom.pos.tolist())
                w.append(_ELECTRONS.get(el, 6) * atom.occ)
                chain.append(ch.name)
                resnum.append(res.seqid.num)
                names.append(atom.name)
    if not xyz:
        raise ValueError(f"{path}: no atoms")
    return AtomModel(np.asarray(xyz, np.float64), np.asarray(w, np.float64),
                     np.asarray(chain, dtype=object), np.asarray(resnum, np.int64),
                     np.asarray(names, dtype=object))


def atom_sigma_A(model: AtomModel, resolution_A: float) -> np.ndarray:
    """Gaussian width of every atom for a target resolution -> (M,) Angstrom."""
    base = 0.225 * float(resolution_A)
    return np.sqrt(base**2 + model.extra_sigma_A**2)


def _profiles(pos_px: torch.Tensor, sigma_px: torch.Tensor, box: int) -> torch.Tensor:
    """Voxel-integrated unit Gaussians along one axis: (..., M), (M,) -> (..., M, D)."""
    edges = torch.arange(box + 1, dtype=pos_px.dtype, device=pos_px.device) - box // 2 - 0.5
    scale = 1.0 / (math.sqrt(2.0) * sigma_px.to(pos_px.dtype))[..., None]
    cdf = torch.special.erf((edges - pos_px[..., None]) * scale)
    return 0.5 * (cdf[..., 1:] - cdf[..., :-1])


def atoms_to_density(
    xyz_A: torch.Tensor, weight: torch.Tensor, sigma_A: torch.Tensor,
    box: int, pixel_size_A: float, atom_chunk: int = 4096,
) -> torch.Tensor:
    """Sum of voxel-integrated Gaussians.

    xyz_A (B, M, 3) or (M, 3); weight (B, M) or (M,); sigma_A (M,) -> (B, D, D, D) (or
    (D, D, D) for unbatched input). Separable: cost B * M * D^3 multiply-adds, chunked
    over atoms to bound memory at ``atom_chunk * D^2`` per item.
    """
    single = xyz_A.ndim == 2
    xyz = (xyz_A[None] if single else xyz_A).to(torch.float32) / pixel_size_A
    b, m, _ = xyz.shape
    w = weight.to(torch.float32).expand(b, m)
    sig = (sigma_A.to(torch.float32) / pixel_size_A).expand(m)
    out = torch.zeros((b, box * box, box), dtype=torch.float32, device=xyz.device)
    for start in range(0, m, atom_chunk):
        sl = slice(start, start + atom_chunk)
        gx, gy, gz = (_profiles(xyz[:, sl, a], sig[sl], box) for a in range(3))
        zy = (gz * w[:, sl, None])[..., :, None] * gy[..., None, :]  # (B, m, Dz, Dy)
        out += torch.bmm(zy.reshape(b, -1, box * box).transpose(1, 2), gx)
    out = out.reshape(b, box, box, box)
    return out[0] if single else out


def project_atoms(
    xyz_A: torch.Tensor, weight: torch.Tensor, sigma_A: torch.Tensor,
    rotations: torch.Tensor, box: int, pixel_size_A: float,
) -> torch.Tensor:
    """Exact projections ``sum_z`` of :func:`atoms_to_density` of rotated atoms.

    xyz_A (B, M, 3); weight (B, M) or (M,); sigma_A (M,); rotations (B, T, 3, 3)
    reference -> image -> images (B, T, D, D) indexed [y, x].
    """
    b, m, _ = xyz_A.shape
    p = torch.einsum("btij,bmj->btmi", rotations.to(torch.float32),
                     xyz_A.to(torch.float32)) / pixel_size_A  # (B, T, M, 3)
    sig = (sigma_A.to(torch.float32) / pixel_size_A).expand(m)
    w = weight.to(torch.float32).expand(b, m)[:, None, :, None]  # (B, 1, M, 1)
    gx = _profiles(p[..., 0], sig, box)  # (B, T, M, D)
    gy = _profiles(p[..., 1], sig, box) * w
    return gy.transpose(-1, -2) @ gx


def model_density(
    name: str | Path, pixel_size_A: float, box: int, resolution_A: float | None = None,
    chains: list[str] | None = None, residues: list[tuple[str | None, int, int]] | None = None,
    centre: bool = True,
) -> torch.Tensor:
    """Density of an atomic model (optionally only ``chains`` / ``residues``) -> (D, D, D).

    ``resolution_A`` defaults to twice the pixel size; ``centre`` puts the selected atoms'
    centre of mass at the box centre.
    """
    model = read_model(name)
    if chains is not None or residues is not None:
        model = model.subset(model.select(chains, residues))
    if centre:
        model = model.translated(-model.centre_of_mass_A())
    sigma = atom_sigma_A(model, resolution_A or 2.0 * pixel_size_A)
    return atoms_to_density(torch.as_tensor(model.xyz_A), torch.as_tensor(model.weight),
                            torch.as_tensor(sigma), box, pixel_size_A)


# --------------------------------------------------------------------------- components
def _sphere_profile(dist_px: np.ndarray, radius_px: float, edge_px: float) -> np.ndarray:
    """1 inside ``radius - edge/2``, raised cosine to 0 at ``radius + edge/2``."""
    if edge_px <= 0:
        return (dist_px <= radius_px).astype(np.float64)
    t = np.clip((dist_px - (radius_px - 0.5 * edge_px)) / edge_px, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def surface_component_mask(
    volume: torch.Tensor | np.ndarray, direction: np.ndarray | list[float], fraction: float,
    exclude: torch.Tensor | np.ndarray | None = None, edge_px: float = 1.0,
    level: float = 0.1, tol: float = 1e-4,
) -> torch.Tensor:
    """A compact region of ``volume`` on its surface holding ``fraction`` of its mass.

    volume (D, D, D) >= 0; direction (x, y, z). The region is a soft sphere (raised-cosine
    edge of ``edge_px``) around the outermost envelope voxel ``s`` along ``direction``
    (envelope: density > ``level`` x max), centred at ``s - R/2 d`` so that it lies mostly
    inside the density; the radius ``R`` is bisected until
    ``sum(volume * mask) = fraction * sum(volume)`` to relative ``tol`` (the spheres are
    nested in ``R``, so the mass is monotone). ``exclude`` (D, D, D) in [0, 1]: a region
    already taken (e.g. another component); the mask is multiplied by ``1 - exclude``.
    -> (D, D, D) float32 in [0, 1].
    """
    v = np.clip(np.asarray(volume, dtype=np.float64), 0.0, None)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"component fraction must be in (0, 1), got {fraction}")
    free = 1.0 if exclude is None else 1.0 - np.asarray(exclude, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)[::-1]  # (z, y, x)
    if d.shape != (3,) or not np.linalg.norm(d) > 0:
        raise ValueError(f"direction must be a non-zero (x, y, z) vector, got {direction}")
    d = d / np.linalg.norm(d)
    box = v.shape[-1]
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in v.shape],
                                indexing="ij"), -1)  # (D, D, D, 3) z, y, x
    env = v > level * v.max()
    if not env.any():
        raise ValueError("empty volume: no envelope to place a component on")
    pts = grid[env]
    surface = pts[np.argmax(pts @ d)]
    total = v.sum()

    def mask_for(r: float) -> np.ndarray:
        dist = np.linalg.norm(grid - (surface - 0.5 * r * d), axis=-1)
        return _sphere_profile(dist, r, edge_px) * free

    def mass(r: float) -> float:
        return float((v * mask_for(r)).sum() / total)

    lo, hi = 0.0, 2.0 * box
    if mass(hi) < fraction:
        raise ValueError(f"no region of {fraction:.3g} of the mass is free to take")
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if mass(mid) < fraction:
            lo = mid
        else:
            hi = mid
        if abs(mass(hi) - fraction) <= tol * fraction:
            break
    return torch.from_numpy(mask_for(hi).astype(np.float32))

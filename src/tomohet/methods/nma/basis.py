"""Deformation bases for ``nma``: elastic-network modes of an atomic model or of
pseudo-atoms fitted to a map (HEMNMA), or principal components of an ensemble (MDTOMO).

A :class:`DeformationBasis` holds residue beads (the model's residues at their centres of
mass, or pseudo-atoms) in the reference frame (Angstrom from the box centre), their
electron weights and Gaussian widths, and K modes ``(K, M, 3)`` each scaled to an RMS
bead displacement of 1 A, so that a mode amplitude is in Angstrom. The model's atoms
(when there is one) move with their bead, for the trajectories written as PDB frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tomohet.data.sources import DataError
from tomohet.io.atom_models import AtomModels, read_atom_models
from tomohet.physics.elastic import anm_modes, superpose

__all__ = ["DeformationBasis", "basis_from_model", "basis_from_map", "check_in_box"]


@dataclass
class DeformationBasis:
    beads_A: np.ndarray  # (M, 3)
    weight: np.ndarray  # (M,)
    sigma_A: np.ndarray  # (M,) intrinsic width of each bead
    modes: np.ndarray  # (K, M, 3), RMS 1 A each
    kind: str  # "anm", "ensemble" or "pseudo-atoms"
    source: str
    atoms: AtomModels | None = None  # all atoms (frame 0 replaced by the reference)
    owner: np.ndarray | None = None  # (A,) bead of every atom

    @property
    def n_modes(self) -> int:
        return int(self.modes.shape[0])

    def deform(self, amplitudes: np.ndarray) -> np.ndarray:
        """Bead positions for amplitudes (F, K) -> (F, M, 3)."""
        a = np.atleast_2d(np.asarray(amplitudes, dtype=np.float64))
        return self.beads_A[None] + np.einsum("fk,kmi->fmi", a, self.modes)

    def deform_atoms(self, amplitudes: np.ndarray) -> np.ndarray:
        """All-atom positions for amplitudes (F, K) -> (F, A, 3) (atoms move with their
        bead); ValueError when the basis has no atoms (pseudo-atoms)."""
        if self.atoms is None or self.owner is None:
            raise ValueError("a pseudo-atom basis has no atomic model")
        a = np.atleast_2d(np.asarray(amplitudes, dtype=np.float64))
        shift = np.einsum("fk,kmi->fmi", a, self.modes)[:, self.owner]
        return self.atoms.xyz_A[0][None] + shift


def _unit_rms(modes: np.ndarray) -> np.ndarray:
    rms = np.sqrt((modes**2).sum(-1).mean(-1))
    return modes / np.maximum(rms, 1e-12)[:, None, None]


def _beads(xyz_A: np.ndarray, weight: np.ndarray, group: np.ndarray, n: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residue beads of (F, A, 3) frames: (F, n, 3) centres of mass, (n,) electrons,
    (n,) radius of gyration / sqrt(3) of frame 0 (the bead's Gaussian width)."""
    w = np.bincount(group, weight, n)
    xyz = np.stack([np.stack([np.bincount(group, weight * f[:, a], n) for a in range(3)], 1)
                    for f in xyz_A]) / w[None, :, None]
    d2 = ((xyz_A[0] - xyz[0][group]) ** 2).sum(1)
    return xyz, w, np.sqrt(np.bincount(group, weight * d2, n) / w / 3)


def basis_from_model(path: str, n_modes: int, cutoff_A: float = 15.0,
                     centre: bool = True) -> DeformationBasis:
    """Basis from a PDB/mmCIF file: ANM modes of its residue beads (one model), or the
    principal components of its models after superposition (several models: MDTOMO).

    ``centre``: put the (mean) model's centre of mass at the box centre, as the
    simulator does; else coordinates are map coordinates (origin at the box corner),
    shifted to the box centre by :func:`check_in_box`'s caller.
    """
    models = read_atom_models(path)
    group, n = models.residue_groups()
    frames, w, sig = _beads(models.xyz_A, models.weight, group, n)
    f = frames.shape[0]
    if f > 1:  # superpose every frame's beads on the first, then PCA
        use = np.ones(n, bool)
        aligned = np.stack([superpose(fr, frames[0], use, w) for fr in frames])
        ref = aligned.mean(0)
        dev = (aligned - ref[None]).reshape(f, -1)
        _, s, vt = np.linalg.svd(dev, full_matrices=False)
        # components holding at least 0.1% of the variance (superposition leaves tiny rest)
        k = int(min(n_modes, f - 1, int((s**2 > 1e-3 * max(s[0] ** 2, 1e-30)).sum())))
        if k < 1:
            raise DataError(f"{path}: the {f} models do not differ (no ensemble motion)")
        modes, kind = vt[:k].reshape(k, n, 3), "ensemble"
        # frame 0's atoms moved with its beads' fit onto the mean, then each residue
        # shifted so that its bead sits on the mean bead
        both = superpose(np.vstack([frames[0], models.xyz_A[0]]),
                         np.vstack([ref, np.zeros_like(models.xyz_A[0])]),
                         np.arange(n + len(group)) < n, np.concatenate([w, np.ones(len(group))]))
        beads0, atoms_ref = both[:n], both[n:]
        shift = ref - beads0
        models.xyz_A = (atoms_ref + shift[group])[None]
    else:
        if n < 3:
            raise DataError(f"{path}: {n} residues are too few for normal modes")
        ref = frames[0]
        modes, kind = anm_modes(ref, min(n_modes, 3 * n - 6), cutoff_A), "anm"
        models.xyz_A = models.xyz_A[:1]
    if centre:
        com = (ref * w[:, None]).sum(0) / w.sum()
        ref = ref - com
        models.xyz_A = models.xyz_A - com
    return DeformationBasis(ref, w, sig, _unit_rms(modes), kind, path, models, group)


def basis_from_map(volume: torch.Tensor, pixel_size_A: float, n_modes: int,
                   n_pseudo: int = 200, seed: int = 0,
                   cutoff_factor: float = 2.5) -> DeformationBasis:
    """Pseudo-atoms fitted to a map (k-means of the voxels above a threshold, weighted by
    density) and their ANM modes (cutoff ``cutoff_factor`` x the mean spacing)."""
    from sklearn.cluster import KMeans

    v = volume.detach().cpu().double().numpy()
    d = v.shape[-1]
    pos = v[v > 0]
    if pos.size < 4:
        raise ValueError("the consensus map has no positive density to place pseudo-atoms in")
    thr = np.quantile(pos, 0.5)
    zz, yy, xx = np.nonzero(v > thr)
    pts = np.stack([xx, yy, zz], 1).astype(np.float64) - d // 2
    dens = v[zz, yy, xx]
    k = int(min(n_pseudo, len(pts)))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(pts, sample_weight=dens)
    beads = km.cluster_centers_ * pixel_size_A
    weight = np.maximum(np.bincount(km.labels_, dens, k), 1e-6)
    nn = np.sqrt(((beads[:, None] - beads[None]) ** 2).sum(-1) + np.eye(k) * 1e12).min(1)
    spacing = float(np.median(nn))
    cutoff = cutoff_factor * spacing
    for _ in range(8):  # widen the cutoff until the network is one rigid body
        try:
            modes = anm_modes(beads, min(n_modes, 3 * k - 6), cutoff)
            break
        except ValueError:
            cutoff *= 1.25
    else:
        modes = anm_modes(beads, min(n_modes, 3 * k - 6), cutoff)
    sig = np.full(k, 0.5 * spacing)
    return DeformationBasis(beads, weight, sig, _unit_rms(modes), "pseudo-atoms",
                            "consensus map")


def check_in_box(basis: DeformationBasis, box: int, pixel_size_A: float) -> None:
    """DataError (naming the model) when any bead lies outside the box, or the model
    spans more than the box."""
    half = box / 2 * pixel_size_A
    reach = np.abs(basis.beads_A).max(0)
    if (reach > half).any():
        axis = "xyz"[int(np.argmax(reach - half))]
        raise DataError(
            f"{basis.source}: atoms reach {reach.max():.1f} A from the box centre along {axis}, "
            f"outside the box ({box} px x {pixel_size_A:g} A = {2 * half:.1f} A); "
            "the model must be fitted into the particles' reference frame")

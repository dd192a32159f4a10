"""Atomic models (PDB / mmCIF, plain or gzipped) in and out, through gemmi.

:func:`read_atom_models` reads every model of a file (a multi-model PDB is an ensemble of
conformations, MDTOMO style) as one coordinate array ``(F, M, 3)`` over the atoms common
to all models, with electron-count weights and residue identities.
:func:`write_multimodel_pdb` writes frames of coordinates as a multi-model PDB (or mmCIF
when the name ends in ``.cif``), atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_path

__all__ = ["AtomModels", "read_atom_models", "write_multimodel_pdb"]


@dataclass
class AtomModels:
    """F conformations of the same M atoms. xyz_A (F, M, 3); weight (M,) electrons;
    chain, atom_name, res_name (M,) str; resnum (M,) int; source: the file read."""

    xyz_A: np.ndarray
    weight: np.ndarray
    chain: np.ndarray
    resnum: np.ndarray
    res_name: np.ndarray
    atom_name: np.ndarray
    source: str

    @property
    def n_atoms(self) -> int:
        return int(self.xyz_A.shape[1])

    def residue_groups(self) -> tuple[np.ndarray, int]:
        """(M,) index of each atom's residue (by chain and number, in order) and the count."""
        keys = list(zip(self.chain.tolist(), self.resnum.tolist(), strict=True))
        uniq = {k: n for n, k in enumerate(dict.fromkeys(keys))}
        return np.array([uniq[k] for k in keys], dtype=np.int64), len(uniq)


def _electrons(atom_name: str, element: str, polymer: bool) -> float:
    """Electrons of an atom: in ATOM records (polymers) the element is the first letter of
    the atom name (robust to CHARMM files with an empty or wrong element column), in
    HETATM records the element column."""
    import gemmi

    if polymer or not element:
        element = atom_name.lstrip("0123456789")[:1] or "C"
    z = gemmi.Element(element).atomic_number
    return float(z if z > 0 else 6)


def read_atom_models(path: str | os.PathLike[str]) -> AtomModels:
    """Every model of a PDB/mmCIF file; atoms matched across models by (chain, residue
    number, atom name). DataError (naming the file) when unreadable or without atoms."""
    import gemmi

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: atomic model not found")
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{p}: not a readable PDB/mmCIF model ({exc})") from exc
    st.remove_alternative_conformations()
    frames: list[dict[tuple[str, int, str], list[float]]] = []
    meta: dict[tuple[str, int, str], tuple[str, float]] = {}
    for model in st:
        coords: dict[tuple[str, int, str], list[float]] = {}
        for ch in model:
            for res in ch:
                polymer = res.het_flag != "H"  # ATOM records
                for atom in res:
                    key = (ch.name, int(res.seqid.num or 0), atom.name)
                    if key in coords:
                        continue
                    coords[key] = atom.pos.tolist()
                    w = _electrons(atom.name, atom.element.name, polymer) * atom.occ
                    meta.setdefault(key, (res.name, w))
        if coords:
            frames.append(coords)
    if not frames:
        raise DataError(f"{p}: the model has no atoms (field ATOM/HETATM records)")
    keys = [k for k in frames[0] if all(k in f for f in frames[1:])]
    if not keys:
        raise DataError(f"{p}: the {len(frames)} models share no atom (chain, residue, name)")
    xyz = np.array([[f[k] for k in keys] for f in frames], dtype=np.float64)
    if not np.isfinite(xyz).all():
        raise DataError(f"{p}: atom coordinates contain NaN or inf")
    return AtomModels(
        xyz_A=xyz, weight=np.array([meta[k][1] for k in keys]),
        chain=np.array([k[0] for k in keys], dtype=object),
        resnum=np.array([k[1] for k in keys], dtype=np.int64),
        res_name=np.array([meta[k][0] for k in keys], dtype=object),
        atom_name=np.array([k[2] for k in keys], dtype=object), source=str(p))


def write_multimodel_pdb(path: str | os.PathLike[str], frames_A: np.ndarray,
                         chain: np.ndarray, resnum: np.ndarray, res_name: np.ndarray,
                         atom_name: np.ndarray) -> Path:
    """Frames (F, M, 3) as models 1..F of one PDB (mmCIF for ``.cif``), atomically."""
    import gemmi

    st = gemmi.Structure()
    for f, xyz in enumerate(np.asarray(frames_A, dtype=np.float64)):
        model = gemmi.Model(f + 1)
        chains: dict[str, gemmi.Chain] = {}
        last: tuple[str, int] | None = None
        residue = None
        for m in range(len(xyz)):
            c, r = str(chain[m]) or "A", int(resnum[m])
            if (c, r) != last:
                if residue is not None and last is not None:
                    chains[last[0]].add_residue(residue)
                residue = gemmi.Residue()
                residue.name = str(res_name[m])
                residue.seqid = gemmi.SeqId(r, " ")
                chains.setdefault(c, gemmi.Chain(c))
                last = (c, r)
            atom = gemmi.Atom()
            name = str(atom_name[m])
            atom.name = name
            atom.element = gemmi.Element(name.lstrip("0123456789")[:1] or "C")
            atom.pos = gemmi.Position(*xyz[m])
            atom.occ = 1.0
            assert residue is not None
            residue.add_atom(atom)
        if residue is not None and last is not None:
            chains[last[0]].add_residue(residue)
        for ch in chains.values():
            model.add_chain(ch)
        st.add_model(model)
    st.setup_entities()
    out = Path(path)
    with atomic_path(out) as tmp:
        if out.suffix.lower() in (".cif", ".mmcif"):
            st.make_mmcif_document().write_file(str(tmp))
        else:
            st.write_pdb(str(tmp))
    return out

"""Per-particle random choices drawn from particle names, never from row positions.

Every stochastic step that is made per particle (half set, batch order, tilt subset,
visiting order, initial class) draws from a keyed hash of the particle's identity
``(tomogram name, particle name)``, the seed and a *stream* name. So permuting the
rows of a star (with their stack frames) or changing the batch size changes nothing
about any particle's result.

All functions are pure: same identity + seed + stream -> same value on any machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "particle_keys",
    "keyed_uniform",
    "keyed_order",
    "keyed_uniform_grid",
    "file_half_sets",
    "half_sets",
]


def _identity(names: Sequence[str], tomo_names: Sequence[str] | None) -> list[str]:
    if tomo_names is None:
        return [str(n) for n in names]
    if len(tomo_names) != len(names):
        raise ValueError(f"{len(tomo_names)} tomogram names for {len(names)} particles")
    return [f"{t}\x1f{n}" for t, n in zip(tomo_names, names, strict=True)]


def particle_keys(names: Sequence[str], tomo_names: Sequence[str] | None = None,
                  seed: int | None = 0, stream: str = "") -> np.ndarray:
    """(N,) uint64 keys: BLAKE2b of (seed, stream, tomogram, name).

    ``seed=None`` is seed 0 (reproducible by default).
    """
    salt = f"{0 if seed is None else int(seed)}\x1e{stream}\x1e".encode()
    out = np.empty(len(names), dtype=np.uint64)
    for i, ident in enumerate(_identity(names, tomo_names)):
        h = hashlib.blake2b(salt + ident.encode("utf-8", "surrogatepass"), digest_size=8)
        out[i] = int.from_bytes(h.digest(), "little")
    return out


def keyed_uniform(names: Sequence[str], tomo_names: Sequence[str] | None = None,
                  seed: int | None = 0, stream: str = "") -> np.ndarray:
    """(N,) float64 uniform in [0, 1), one per particle, from its keyed hash."""
    k = particle_keys(names, tomo_names, seed, stream)
    return (k >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def keyed_uniform_grid(names: Sequence[str], tomo_names: Sequence[str] | None, n_cols: int,
                       seed: int | None = 0, stream: str = "") -> np.ndarray:
    """(N, n_cols) float64 uniforms in [0, 1): column j is stream ``f"{stream}/{j}"``.

    Used for per-(particle, tilt) choices such as tilt subsets.
    """
    return np.stack([keyed_uniform(names, tomo_names, seed, f"{stream}/{j}")
                     for j in range(n_cols)], axis=1) if n_cols else np.zeros((len(names), 0))


def keyed_order(names: Sequence[str], tomo_names: Sequence[str] | None = None,
                seed: int | None = 0, stream: str = "order") -> np.ndarray:
    """(N,) int64 permutation of the particles sorted by their keys (ties by identity).

    The same particles in any row order are visited in the same (name-defined) order.
    """
    keys = particle_keys(names, tomo_names, seed, stream)
    ident = np.asarray(_identity(names, tomo_names), dtype=object)
    return np.asarray(np.lexsort((ident, keys)), dtype=np.int64)


def file_half_sets(table: pd.DataFrame) -> np.ndarray | None:
    """0/1 half-set labels from ``rlnRandomSubset`` (1/2) or STOPGAP ``halfset`` (A/B).

    None when the table has neither, or when they are not two non-empty sets of valid
    values (then halves are drawn from the particle names).
    """
    if len(table) == 0:
        return None
    if "rlnRandomSubset" in table.columns:
        halves = pd.to_numeric(table["rlnRandomSubset"], errors="coerce").to_numpy() - 1
    elif "halfset" in table.columns:
        halves = table["halfset"].astype(str).str.upper().map({"A": 0, "B": 1}).to_numpy()
    else:
        return None
    halves = np.asarray(halves, dtype=np.float64)
    if not np.isin(halves, (0.0, 1.0)).all() or len(np.unique(halves)) != 2:
        return None
    return halves.astype(np.int64)


def half_sets(names: Sequence[str], tomo_names: Sequence[str] | None = None,
              seed: int | None = 0, table: pd.DataFrame | None = None) -> np.ndarray:
    """(N,) int64 half set (0/1) of each particle.

    The file's ``rlnRandomSubset`` / ``halfset`` when ``table`` has valid ones; otherwise
    a balanced split by keyed hash: particles sorted by key, alternate halves, so the
    halves differ in size by at most one and do not depend on row order.
    """
    if table is not None and len(table) == len(names):
        given = file_half_sets(table)
        if given is not None:
            return given
    order = keyed_order(names, tomo_names, seed, stream="half-set")
    labels = np.zeros(len(names), dtype=np.int64)
    labels[order[1::2]] = 1
    return labels

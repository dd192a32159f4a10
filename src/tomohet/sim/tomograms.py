"""Placement of particles in tomograms: non-overlapping, optionally clustered by state.

Tomogram frame: x, y in the specimen plane (tilt axis along y), z along the beam at 0
degrees; positions are in Angstrom relative to the tomogram centre, as RELION 5's
``rlnCenteredCoordinate{X,Y,Z}Angst``.

Clustering: in every tomogram each state k gets a random centre; with probability
``clustering`` a particle's position is proposed from a Gaussian around its state's centre
(standard deviation ``cluster_spread`` x the tomogram's x/y size, uniform in z), otherwise
uniformly. Proposals closer than ``min_distance_A`` to an accepted particle, or outside
the tomogram (minus a margin of half the distance), are rejected.
"""

from __future__ import annotations

import numpy as np

__all__ = ["assign_tomograms", "place_particles"]


def assign_tomograms(n: int, n_tomograms: int, rng: np.random.Generator) -> np.ndarray:
    """Tomogram index of every particle, as equal as possible, random order -> (N,)."""
    return rng.permutation(np.arange(n) % max(1, n_tomograms))


def _place_one_tomogram(
    state: np.ndarray, size_A: np.ndarray, min_distance_A: float, clustering: float,
    cluster_spread: float, rng: np.random.Generator, max_tries: int = 200,
) -> np.ndarray:
    """Positions (n, 3) for the particles of one tomogram with states ``state`` (n,)."""
    half = size_A / 2 - min_distance_A / 2
    if np.any(half <= 0):
        raise ValueError(f"tomogram {size_A.tolist()} A is too small for particles "
                         f"{min_distance_A:.0f} A apart")
    n_states = int(state.max()) + 1 if len(state) else 0
    centres = rng.uniform(-half, half, (n_states, 3))
    spread = cluster_spread * size_A
    out = np.zeros((len(state), 3))
    min_d2 = min_distance_A**2
    for i, k in enumerate(state):
        for attempt in range(max_tries):
            cand = rng.uniform(-half, half, (32, 3))
            if rng.random() < clustering and attempt < max_tries // 2:
                near = rng.normal(centres[k], spread, (32, 3))
                near[:, 2] = cand[:, 2]
                cand = np.clip(near, -half, half)
            if i == 0:
                out[0] = cand[0]
                break
            d2 = ((cand[:, None, :] - out[None, :i]) ** 2).sum(-1).min(1)
            ok = np.nonzero(d2 >= min_d2)[0]
            if len(ok):
                out[i] = cand[ok[0]]
                break
        else:
            raise ValueError(
                f"could not place particle {i + 1}/{len(state)} at least {min_distance_A:.0f} A "
                f"from the others in a {size_A.tolist()} A tomogram: use more or larger "
                f"tomograms")
    return out


def place_particles(
    state: np.ndarray, tomogram: np.ndarray, tomogram_size_A: tuple[float, float, float],
    min_distance_A: float, rng: np.random.Generator, clustering: float = 0.0,
    cluster_spread: float = 0.12,
) -> np.ndarray:
    """Positions (N, 3) in Angstrom relative to each particle's tomogram centre.

    state (N,) int (clustering groups; any labels >= 0), tomogram (N,) int.
    """
    size = np.asarray(tomogram_size_A, dtype=np.float64)
    positions = np.zeros((len(state), 3))
    labels = np.maximum(np.asarray(state, dtype=np.int64), 0)
    for t in np.unique(tomogram):
        sel = np.nonzero(tomogram == t)[0]
        positions[sel] = _place_one_tomogram(labels[sel], size, min_distance_A, clustering,
                                             cluster_spread, rng)
    return positions

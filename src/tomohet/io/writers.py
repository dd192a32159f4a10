"""``write_particles`` and the CSV outputs of methods (assignments, latent coordinates)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_write_text
from tomohet.io.detect import FORMATS

__all__ = ["write_particles", "write_assignments_csv", "write_latent_csv"]


def write_particles(
    particles: TiltSeriesParticles | SubtomogramParticles,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    extra_columns: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``particles`` in a supported flavour; returns every written path.

    ``fmt``: one of ``relion5`` (optimisation set + particles + tomograms star, plus 2D
    stacks for in-memory images; for subtomograms a RELION 5 3D star), ``warp``
    (per-tilt star + one ``.mrcs``), ``relion4``, ``stopgap``, ``dynamo`` (subtomogram
    formats). Default: the format the set was read in (``particles.meta["format"]``).
    ``extra_columns``: one row per particle (e.g. rlnClassNumber,
    rlnMaxValueProbDistribution, latent coordinates), appended to the particle rows.
    All files are written atomically.
    """
    out = Path(path)
    kind = fmt or particles.meta.get("format") or (
        "relion5" if isinstance(particles, TiltSeriesParticles) else "relion4")
    if kind not in FORMATS:
        raise DataError(f"{out}: unknown format {kind!r}; expected one of {FORMATS}")
    if extra_columns is not None and len(extra_columns) != particles.n_particles:
        raise DataError(f"{out}: extra_columns has {len(extra_columns)} rows for "
                        f"{particles.n_particles} particles")
    if kind == "relion5" and isinstance(particles, TiltSeriesParticles):
        from tomohet.io.relion5_writer import write_relion5

        return write_relion5(particles, out, extra_columns)
    if kind == "warp":
        from tomohet.io.warp import write_warp

        return write_warp(particles, out, extra_columns)  # type: ignore[arg-type]
    if kind in ("relion4", "relion5"):
        from tomohet.io.relion4 import write_relion4

        return write_relion4(particles, out, extra_columns,  # type: ignore[arg-type]
                             relion5=kind == "relion5")
    if kind == "stopgap":
        from tomohet.io.stopgap import write_stopgap

        return write_stopgap(particles, out, extra_columns)  # type: ignore[arg-type]
    from tomohet.io.dynamo import write_dynamo

    return write_dynamo(particles, out, extra_columns)  # type: ignore[arg-type]


def _latent_frame(latent: np.ndarray | None, n: int, path: Path) -> pd.DataFrame:
    if latent is None:
        return pd.DataFrame(index=range(n))
    z = np.asarray(latent, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    if z.ndim != 2 or len(z) != n:
        raise DataError(f"{path}: latent has shape {z.shape} for {n} particles")
    return pd.DataFrame({f"z{i}": z[:, i] for i in range(z.shape[1])})


def write_assignments_csv(
    path: str | os.PathLike[str],
    names: Sequence[str],
    labels: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    latent: np.ndarray | None = None,
) -> Path:
    """CSV with ``particle`` (input names), ``class`` (1-based), ``max_prob``, ``z0..zk``.

    ``labels`` (N,) are 0-based; when missing but ``probabilities`` (N, K) are given the
    class is their argmax. Columns without data are left out. Written atomically.
    """
    out = Path(path)
    n = len(names)
    df = pd.DataFrame({"particle": list(names)})
    probs = None if probabilities is None else np.asarray(probabilities, dtype=np.float64)
    if probs is not None and (probs.ndim != 2 or len(probs) != n):
        raise DataError(f"{out}: probabilities have shape {probs.shape} for {n} particles")
    if labels is None and probs is not None:
        labels = probs.argmax(axis=1)
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if len(lab) != n:
            raise DataError(f"{out}: {len(lab)} labels for {n} particles")
        df["class"] = lab.astype(np.int64) + 1
    if probs is not None:
        df["max_prob"] = probs.max(axis=1)
    df = pd.concat([df, _latent_frame(latent, n, out)], axis=1)
    atomic_write_text(out, df.to_csv(index=False))
    return out


def write_latent_csv(path: str | os.PathLike[str], names: Sequence[str],
                     latent: np.ndarray) -> Path:
    """CSV with ``particle`` and ``z0..zk`` (one row per particle), written atomically."""
    out = Path(path)
    df = pd.concat([pd.DataFrame({"particle": list(names)}),
                    _latent_frame(latent, len(names), out)], axis=1)
    atomic_write_text(out, df.to_csv(index=False))
    return out

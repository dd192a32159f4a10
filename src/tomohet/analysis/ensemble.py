"""SIREn / MAVEn-style analysis of a volume ensemble: regions whose occupancy co-varies.

Input: F volumes of one box (a folder of maps, or volumes sampled from a continuous
method's latent space, e.g. one per particle from ``particle_volumes``).

1. Voxel occupancy: each volume thresholded (default: ``threshold_fraction`` of the
   99.5th percentile of all voxels) -> (F, V) booleans.
2. Variable voxels: occupied in more than ``min_fraction`` and fewer than
   ``1 - min_fraction`` of the volumes.
3. Regions: the variable voxels clustered by co-occupancy. Each voxel's occupancy
   vector (F,) is projected on the leading co-occupancy patterns (principal components
   of the (F, V) occupancy matrix holding at least ``pattern_fraction`` of its variance,
   at most ``max_patterns``): a noisy voxel keeps the pattern it follows, not its noise.
   Average-linkage hierarchical clustering on the cosine distance of these projections,
   cut at ``1 - min_correlation``; clusters under ``min_voxels`` dropped. At most
   ``max_voxels`` of the most variable voxels are clustered; the others join the region
   they align with best (when above ``min_correlation``). Clusters whose occupancies
   correlate above ``merge_correlation`` across the volumes are then merged (parts of
   one component crossing the threshold at different latent values).
4. Per volume, each region's occupancy (fraction of its voxels occupied) -> (F, R)
   features; the regions' co-occurrence (how often both are present) -> figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomohet.data.sources import DataError

__all__ = ["EnsembleRegions", "ensemble_regions", "load_map_folder", "co_occurrence",
           "plot_co_occurrence"]

_SUFFIXES = (".mrc", ".map", ".mrcs", ".rec")


@dataclass
class EnsembleRegions:
    """labels (D, D, D) int: region index 1..R of every voxel, 0 outside any region;
    occupancy (F, R) per volume and region; threshold used; sizes (R,) voxels."""

    labels: np.ndarray
    occupancy: np.ndarray
    threshold: float
    sizes: np.ndarray

    @property
    def n_regions(self) -> int:
        return int(self.occupancy.shape[1])

    def present(self, level: float = 0.5) -> np.ndarray:
        """(F, R) bool: region present in a volume (occupancy above ``level``)."""
        return self.occupancy > level


def load_map_folder(folder: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, float]:
    """Every map in ``folder`` (sorted by name) -> (names, (F, D, D, D) float32, pixel A).
    DataError naming the files when none are found or their sizes differ."""
    from tomohet.io.mrc import read_mrc

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of maps")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _SUFFIXES)
    if not files:
        raise DataError(f"{root}: no maps ({', '.join(_SUFFIXES)}) in the folder")
    vols, px = [], []
    for f in files:
        v, p = read_mrc(f)
        vols.append(np.asarray(v, dtype=np.float32))
        px.append(p)
    shapes = {f.name: v.shape for f, v in zip(files, vols, strict=True)}
    first = vols[0].shape
    odd = [n for n, s in shapes.items() if s != first]
    if odd or len(first) != 3:
        raise DataError(
            f"{root}: maps of different sizes (field shape): {files[0].name} is {first}, "
            + ", ".join(f"{n} is {shapes[n]}" for n in odd[:5])
            + (f" and {len(odd) - 5} more" if len(odd) > 5 else ""))
    return [f.name for f in files], np.stack(vols), float(px[0])


def _merge_correlated(x: np.ndarray, assign: np.ndarray, n: int, level: float
                      ) -> tuple[np.ndarray, int]:
    """Merge clusters whose occupancies (fraction of their voxels occupied, per volume)
    correlate above ``level`` (parts of one component that appear at different latent
    values); anti-correlated or independent regions stay apart. -> (assign, groups)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if n < 2:
        return assign, n
    occ = np.stack([x[:, assign == j].mean(1) if (assign == j).any() else np.zeros(len(x))
                    for j in range(n)], 1)
    if np.ptp(occ, axis=0).min() == 0:
        return assign, n
    group = fcluster(linkage(occ.T, method="average", metric="correlation"),
                     t=1 - level, criterion="distance") - 1
    _, group = np.unique(group, return_inverse=True)
    merged = np.where(assign >= 0, group[np.maximum(assign, 0)], -1)
    return merged, int(group.max()) + 1


def ensemble_regions(volumes: np.ndarray, threshold: float | None = None,
                     threshold_fraction: float = 0.35, min_fraction: float = 0.05,
                     min_correlation: float = 0.8, min_voxels: int = 8,
                     max_voxels: int = 4000, max_patterns: int = 8,
                     pattern_fraction: float = 0.02,
                     merge_correlation: float = 0.5) -> EnsembleRegions:
    """Regions of co-varying occupancy in volumes (F, D, D, D) (see module doc)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    vols = np.asarray(volumes, dtype=np.float32)
    if vols.ndim != 4 or len(vols) < 2:
        raise ValueError(f"need (F >= 2, D, D, D) volumes, got shape {vols.shape}")
    f, shape = len(vols), vols.shape[1:]
    thr = float(threshold) if threshold is not None else \
        threshold_fraction * float(np.quantile(vols, 0.995))
    occ = vols.reshape(f, -1) > thr
    p = occ.mean(0)
    variable = np.nonzero((p > min_fraction) & (p < 1 - min_fraction))[0]
    labels = np.zeros(int(np.prod(shape)), dtype=np.int64)
    if len(variable) < 2:
        return EnsembleRegions(labels.reshape(shape), np.zeros((f, 0)), thr, np.zeros(0, int))
    x = occ[:, variable].astype(np.float64)
    # co-occupancy patterns: the leading principal components of the voxels' occupancy
    # vectors (each voxel's occupancy is a noisy indicator; its projection is not)
    xc = x - x.mean(0)
    u, sv, vt = np.linalg.svd(xc, full_matrices=False)
    var = sv**2
    n_keep = int(max(1, min(max_patterns, (var > pattern_fraction * var.sum()).sum())))
    emb = (vt[:n_keep] * sv[:n_keep, None]).T  # (V, L): voxel -> pattern coordinates
    order = np.argsort(-(p[variable] * (1 - p[variable])), kind="stable")
    core = np.sort(order[:max_voxels])
    z = linkage(emb[core], method="average", metric="cosine")
    cl = fcluster(z, t=1 - min_correlation, criterion="distance")
    ids, counts = np.unique(cl, return_counts=True)
    keep_ids = ids[counts >= min(min_voxels, len(core))]
    if not len(keep_ids):
        return EnsembleRegions(labels.reshape(shape), np.zeros((f, 0)), thr, np.zeros(0, int))
    centres = np.stack([emb[core[cl == c]].mean(0) for c in keep_ids])  # (R, L)
    cos = (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)) @ (
        centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)).T
    best = cos.argmax(1)
    member = cos[np.arange(len(best)), best] >= min_correlation
    in_core = np.zeros(len(variable), bool)
    in_core[core] = True
    core_lab = np.full(len(variable), -1)
    lookup = {c: j for j, c in enumerate(keep_ids)}
    core_lab[core] = [lookup.get(c, -1) for c in cl]
    assign = np.where(in_core, core_lab, np.where(member, best, -1))
    assign, n_groups = _merge_correlated(x, assign, len(keep_ids), merge_correlation)
    # order regions by size, largest first, ties by their first voxel (not by cluster
    # ids, which follow the order of the volumes); label 1..R
    sizes = np.bincount(assign[assign >= 0], minlength=n_groups)
    first = np.array([variable[assign == j].min() if (assign == j).any() else labels.size
                      for j in range(n_groups)])
    rank = np.lexsort((first, -sizes))
    remap = np.full(n_groups, -1)
    remap[rank] = np.arange(n_groups)
    final = np.where(assign >= 0, remap[np.maximum(assign, 0)], -1)
    sizes = sizes[rank]
    ok = sizes >= min_voxels
    final = np.where((final >= 0) & ok[np.maximum(final, 0)], final, -1)
    n_reg = int(ok.sum())
    labels[variable[final >= 0]] = final[final >= 0] + 1
    occupancy = np.stack([x[:, final == j].mean(1) for j in range(n_reg)], 1) \
        if n_reg else np.zeros((f, 0))
    return EnsembleRegions(labels.reshape(shape), occupancy, thr, sizes[:n_reg])


def co_occurrence(result: EnsembleRegions, level: float = 0.5) -> np.ndarray:
    """(R, R): fraction of volumes in which regions i and j are both present."""
    pres = result.present(level).astype(np.float64)
    return pres.T @ pres / max(len(pres), 1)


def plot_co_occurrence(result: EnsembleRegions, path: str | os.PathLike[str],
                       level: float = 0.5) -> None:
    """Heat map of :func:`co_occurrence` (diagonal: each region's frequency), with the
    correlation of the regions' occupancies written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure

    co = co_occurrence(result, level)
    r = result.n_regions
    corr = np.corrcoef(result.occupancy.T) if r > 1 else np.ones((r, r))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * max(r, 2), 1.0 + 0.6 * max(r, 2)))
    im = ax.imshow(co, vmin=0, vmax=1, cmap="viridis")
    for i in range(r):
        for j in range(r):
            ax.text(j, i, f"{co[i, j]:.2f}\nr={corr[i, j]:+.2f}", ha="center", va="center",
                    fontsize=7, color="w" if co[i, j] < 0.6 else "k")
    ticks = [f"R{j + 1}" for j in range(r)]
    ax.set_xticks(range(r), ticks)
    ax.set_yticks(range(r), ticks)
    ax.set_title("regions present together (fraction of volumes)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    save_figure(fig, path)

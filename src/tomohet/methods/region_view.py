"""Where the classes differ, region by region (issue 12, item 4): ``regions.png``.

A run classified region by region (:mod:`tomohet.methods.factorial`) has one mask per
region (``Discovery.split_regions``, redrawn from each region's split). What a user wants
to see is what comes and goes there: the classes are put in two groups by their density
inside the region (:func:`region_differences`: present / absent, split at the largest
gap of the masked masses), and the difference of the two groups' population-weighted
mean maps is the component. :func:`plot_regions` shows it on sections through each
region's centre, over the population-weighted mean of all classes.

Grouping by the class maps (not by each region's own two-class labels) holds after
untaken combinations were dropped and classes split further, when class numbers no
longer spell the regions' states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RegionDifference", "region_differences", "plot_regions"]


@dataclass
class RegionDifference:
    """One region: ``mask`` (D, D, D) in [0, 1]; ``present`` the classes whose density
    inside it is high; ``difference`` (D, D, D) their weighted mean map minus the
    others' (None when fewer than two classes hold particles, or all have the same
    density there); ``fraction_present`` of the particles (by the classes' populations)."""

    mask: np.ndarray
    present: list[int]
    difference: np.ndarray | None
    fraction_present: float | None


def region_differences(volumes: Any, priors: Any, regions: list[Any]
                       ) -> list[RegionDifference]:
    """Per region, the classes' two groups and the difference of their mean maps.

    volumes (K, D, D, D); priors (K,) (classes with prior 0 take no part); regions: R
    masks (D, D, D) in [0, 1]. Each live class's mass inside a mask is
    ``sum(volume * mask)``; sorted, the largest gap between consecutive masses splits
    them into absent (below) and present (above). -> R :class:`RegionDifference`.
    """
    vols = np.asarray(volumes, dtype=np.float64)
    pri = np.asarray(priors, dtype=np.float64).reshape(-1)
    if vols.ndim != 4 or len(pri) != vols.shape[0]:
        raise ValueError(f"volumes {vols.shape} and priors {pri.shape} do not match")
    live = np.nonzero(pri > 0)[0]
    out = []
    for region in regions:
        mask = np.asarray(region, dtype=np.float64)
        if len(live) < 2:
            out.append(RegionDifference(mask, [int(c) for c in live], None, None))
            continue
        mass = np.einsum("kzyx,zyx->k", vols[live], mask)
        order = np.argsort(mass, kind="stable")
        gaps = np.diff(mass[order])
        if not gaps.max() > 0:
            out.append(RegionDifference(mask, [], None, None))
            continue
        cut = int(np.argmax(gaps)) + 1
        present, absent = live[order[cut:]], live[order[:cut]]

        def mean(cls: np.ndarray) -> np.ndarray:
            w = pri[cls] / pri[cls].sum()
            return np.einsum("k,kzyx->zyx", w, vols[cls])

        out.append(RegionDifference(mask, sorted(int(c) for c in present),
                                    mean(present) - mean(absent),
                                    float(pri[present].sum() / pri[live].sum())))
    return out


def plot_regions(volumes: Any, priors: Any, regions: list[Any], path: Path) -> None:
    """``regions.png``: a row per region, its XY, XZ and YZ sections through the region's
    centre; in grey the population-weighted mean of the class maps, in red / blue the
    region's difference map (present minus absent, :func:`region_differences`) where it
    exceeds a fifth of its largest magnitude, the mask outlined in yellow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure
    from tomohet.methods.locres import _centre

    views = region_differences(volumes, priors, regions)
    if not views:
        return
    vols = np.asarray(volumes, dtype=np.float64)
    pri = np.clip(np.asarray(priors, dtype=np.float64).reshape(-1), 0, None)
    mean = np.einsum("k,kzyx->zyx", pri / max(pri.sum(), 1e-300), vols)
    fig, axes = plt.subplots(len(views), 3, figsize=(7.5, 2.5 * len(views) + 0.3),
                             squeeze=False)
    for r, view in enumerate(views):
        cz, cy, cx = _centre(view.mask > 0.5)  # locres's: the core's centre of mass
        cuts: list[tuple[str, Any]] = [("XY", np.s_[cz]), ("XZ", np.s_[:, cy]),
                                       ("YZ", np.s_[:, :, cx])]
        diff = view.difference
        top = 0.0 if diff is None else float(np.abs(diff).max())
        for j, (name, sl) in enumerate(cuts):
            ax = axes[r, j]
            ax.imshow(mean[sl], cmap="gray", origin="lower")
            if diff is not None and top > 0:
                shown = np.where(np.abs(diff[sl]) > 0.2 * top, diff[sl], np.nan)
                ax.imshow(shown, cmap="bwr", vmin=-top, vmax=top, origin="lower", alpha=0.8)
            if (view.mask[sl] > 0.5).any():
                ax.contour(view.mask[sl], levels=[0.5], colors="yellow", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=8)
        word = "class" if len(view.present) == 1 else "classes"
        share = ("the classes are equal here" if view.fraction_present is None else
                 f"present in {view.fraction_present:.0%} of particles ({word} "
                 f"{', '.join(str(c + 1) for c in view.present)})")
        axes[r, 0].set_ylabel(f"region {r + 1}\n{view.mask.mean():.2%} of box", fontsize=8)
        axes[r, 1].set_title(f"XZ: {share}", fontsize=8)
    fig.suptitle("what comes and goes in each region (red: present minus absent)",
                 fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.02, wspace=0.05)
    save_figure(fig, path, dpi=90)

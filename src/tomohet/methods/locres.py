"""Per-class local resolution of a discrete run (``class_NNN_locres.mrc``, summary, figure).

From the half-set maps of each class that holds particles (``half_volumes_`` (K, 2, D, D,
D), ``priors_``), :func:`tomohet.physics.local_resolution.local_resolution` inside the
method's reference mask (its ``mask_radius_A`` soft sphere, :func:`default_mask`) with one
window for all classes (3x the coarsest class resolution, >= 12 px) so their values
compare. The summary gives each class's median local resolution inside the focus mask
(where the classes were told apart) or, without one, inside the reference mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tomohet.methods.base import HeterogeneityMethod, default_mask
from tomohet.physics.local_resolution import default_window_px, local_resolution

__all__ = ["ClassLocalResolution", "class_local_resolution", "plot_local_resolution"]


@dataclass
class ClassLocalResolution:
    """maps (K, D, D, D) in A, NaN outside the reference mask and for empty classes;
    classes: the 0-based classes computed; window_A; region: the mask the medians are
    taken in ("focus mask" or "reference mask") and ``inside`` (D, D, D) bool, that mask."""

    maps: np.ndarray
    classes: list[int]
    window_A: float
    region: str
    inside: np.ndarray

    def medians_A(self) -> list[float | None]:
        """Median local resolution (A) per class inside ``region`` (None: empty class)."""
        out: list[float | None] = [None] * len(self.maps)
        for c in self.classes:
            vals = self.maps[c][self.inside]
            vals = vals[np.isfinite(vals)]
            out[c] = round(float(np.median(vals)), 1) if len(vals) else None
        return out

    def summary(self) -> dict[str, Any]:
        return {"class_local_resolution_in_focus_A": self.medians_A(),
                "local_resolution_region": self.region,
                "local_resolution_window_A": round(self.window_A, 1)}

    def mrc_maps(self, pixel_size_A: float) -> list[tuple[str, np.ndarray, float]]:
        """(name, map, pixel size) for ``class_NNN_locres.mrc``; 0 where not estimated."""
        return [(f"class_{c + 1:03d}_locres.mrc",
                 np.nan_to_num(self.maps[c], nan=0.0).astype(np.float32), pixel_size_A)
                for c in self.classes]


def class_local_resolution(method: HeterogeneityMethod, pixel_size_A: float
                           ) -> ClassLocalResolution | None:
    """Local resolution of every class with particles; None without half maps."""
    halves = getattr(method, "half_volumes_", None)
    if halves is None:
        return None
    h = torch.as_tensor(halves, dtype=torch.float32)
    k, box = h.shape[0], h.shape[-1]
    priors = getattr(method, "priors_", None)
    classes = list(range(k)) if priors is None else [
        int(c) for c in np.nonzero(np.asarray(priors) > 0)[0]]
    if not classes:
        return None
    ref = default_mask(box, getattr(method, "mask_radius_A", None), pixel_size_A)
    sel = h[classes]
    w = default_window_px(sel[:, 0], sel[:, 1], pixel_size_A, ref)
    maps = np.full((k, box, box, box), np.nan, dtype=np.float32)
    maps[classes] = local_resolution(sel[:, 0], sel[:, 1], pixel_size_A,
                                     window_A=w * pixel_size_A, mask=ref).numpy()
    focus = getattr(method, "focus_mask_", None)
    inside = ref.numpy() >= 0.5
    region = "reference mask"
    if focus is not None and (f := np.asarray(focus) >= 0.5).shape == inside.shape \
            and (f & inside).any():
        inside, region = f & inside, "focus mask"
    return ClassLocalResolution(maps, classes, w * pixel_size_A, region, inside)


def _centre(inside: np.ndarray) -> tuple[int, int, int]:
    """The voxel nearest the centre of mass of ``inside`` (the box centre if empty)."""
    idx = np.argwhere(inside)
    if not len(idx):
        return tuple(s // 2 for s in inside.shape)  # type: ignore[return-value]
    z, y, x = np.rint(idx.mean(0)).astype(int)
    return int(z), int(y), int(x)


def plot_local_resolution(result: ClassLocalResolution, class_volumes: Any,
                          path: Path) -> None:
    """Per class: the XY, XZ and YZ sections through the centre of the focus region (or
    the box centre) of its map in grey, coloured by local resolution where the map
    (smoothed by one voxel) is above a quarter of its maximum, the focus region outlined
    in red; one colour scale for all classes (2-98th percentile of what is coloured,
    at least 1.5x wide) (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from tomohet.io.atomic import save_figure

    vols = np.asarray(class_volumes, dtype=np.float32)
    cz, cy, cx = _centre(result.inside)
    cuts: list[tuple[str, Any]] = [("XY", np.s_[cz]), ("XZ", np.s_[:, cy]), ("YZ", np.s_[:, :, cx])]
    shown = {}
    for c in result.classes:
        smooth = ndimage.gaussian_filter(vols[c], 1.0)
        lr = result.maps[c]
        dense = np.isfinite(lr) & (smooth > 0.25 * np.max(np.where(np.isfinite(lr), smooth,
                                                                   -np.inf)))
        shown[c] = np.where(dense, lr, np.nan)
    values = np.concatenate([v[np.isfinite(v)] for v in shown.values()])
    if not len(values):
        return
    lo, hi = (float(q) for q in np.percentile(values, [2, 98]))
    hi = max(hi, 1.5 * lo)  # a scale of at least 1.5x, so that equal values look equal
    rows = len(result.classes)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.4 * rows + 0.4), squeeze=False)
    image = None
    for r, c in enumerate(result.classes):
        v = vols[c]
        grey = dict(cmap="gray", vmin=float(v.min()), vmax=float(v.max()), origin="lower")
        for j, (name, sl) in enumerate(cuts):
            ax = axes[r, j]
            ax.imshow(v[sl], **grey)
            image = ax.imshow(shown[c][sl], cmap="viridis_r", vmin=lo, vmax=hi,
                              origin="lower", alpha=0.85)
            if result.region == "focus mask" and result.inside[sl].any():
                ax.contour(result.inside[sl].astype(float), levels=[0.5], colors="red",
                           linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"class {c + 1} {name}" if j == 0 else name, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.84, top=0.95, bottom=0.02, wspace=0.05)
    bar = fig.add_axes((0.87, 0.15, 0.025, 0.7))
    assert image is not None  # at least one class
    fig.colorbar(image, cax=bar).set_label(
        f"local resolution (A), window {result.window_A:.0f} A")
    save_figure(fig, path, dpi=90)

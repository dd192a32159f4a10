"""Files a linear method leaves behind.

``latent.csv`` (+ ``assignments.csv`` and ``clusters.json`` when clustered) and the
input star with latent columns (:func:`tomohet.methods.outputs.save_continuous`);
``mean.mrc`` and ``eigenvolume_XX.mrc``; ``component_XX/frame_YY.mrc`` series from -2
to +2 standard deviations; ``explained_variance.csv``/``.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tomohet.methods.base import ParticleSet

if TYPE_CHECKING:
    from tomohet.methods.linear.common import LinearMethod

__all__ = ["save_linear", "plot_explained_variance"]


def plot_explained_variance(ratio: np.ndarray, path: Path, title: str = "",
                            groups: list[str] | None = None) -> None:
    """Bar chart of the explained-variance ratio per component (+ cumulative), PNG.

    ``groups`` (one label per component, e.g. the scale of multiscale): ratios are of each
    group's own total, so the cumulative curve restarts with every group.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure

    r = np.asarray(ratio, dtype=float)
    x = np.arange(1, len(r) + 1)
    labels = groups or [""] * len(r)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for i, g in enumerate(dict.fromkeys(labels)):
        sel = np.array([lab == g for lab in labels])
        ax.bar(x[sel], r[sel], color=f"C{2 * i}", label=g or "component")
        ax.plot(x[sel], np.cumsum(r[sel]), color=f"C{2 * i + 1}", marker="o",
                label=f"cumulative {g}".strip())
    ax.set_xlabel("component")
    ax.set_ylabel("fraction of variance")
    ax.set_xticks(x)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def save_linear(method: LinearMethod, out: Path, particles: ParticleSet) -> None:
    from tomohet.analysis.trajectories import write_component_series
    from tomohet.io import write_mrc
    from tomohet.io.atomic import atomic_write_text
    from tomohet.methods.outputs import save_continuous

    out.mkdir(parents=True, exist_ok=True)
    save_continuous(method, out, particles)
    px = particles.optics.pixel_size_A
    write_mrc(out / "mean.mrc", method.mean_volume_.numpy(), px)
    for j, vol in enumerate(method.eigenvolumes_):
        write_mrc(out / f"eigenvolume_{j + 1:02d}.mrc", vol.numpy(), px)
    write_component_series(out, method.mean_volume_, method.eigenvolumes_, method.latent_, px)
    ratio = method.explained_variance_ratio_
    if ratio is not None:
        table = pd.DataFrame({"component": np.arange(1, len(ratio) + 1),
                              "explained_variance_ratio": ratio})
        atomic_write_text(out / "explained_variance.csv", table.to_csv(index=False))
        scales = getattr(method, "scales_used_A_", None)
        groups = None
        if scales and len(ratio) == len(scales) * method.n_components:
            groups = [f"{s:g} A" for s in scales for _ in range(method.n_components)]
            table["group"] = groups
            atomic_write_text(out / "explained_variance.csv", table.to_csv(index=False))
        plot_explained_variance(ratio, out / "explained_variance.png", method.name, groups)
    if method.labels_ is not None:
        atomic_write_text(out / "clusters.json", json.dumps(method.cluster_info_, indent=1))
    info = {"method": method.name, "params": {k: repr(v) if not isinstance(
        v, int | float | str | bool | type(None)) else v for k, v in method.get_params().items()},
        "timings_s": getattr(method, "timings_", {})}
    atomic_write_text(out / "method.json", json.dumps(info, indent=1))

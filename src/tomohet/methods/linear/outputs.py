"""The explained-variance figure of a linear method (written by
:meth:`tomohet.methods.linear.common.LinearMethod.save`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_explained_variance"]


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

"""Report figures: matplotlib (Agg) -> base64 PNG strings for inline ``<img>`` tags.

Every function takes arrays and returns a base64-encoded PNG (no file is written).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

__all__ = [
    "to_base64_png", "latent_scatter", "confusion_heatmap", "population_bars",
    "central_slices", "fsc_curves", "tomogram_maps", "relabel_to_truth", "embed_2d",
    "ladder_heatmaps", "class_differences",
]

DPI = 80
# the oracle's ARI under which a ladder cell is hatched in the fraction-of-oracle maps:
# issue 12's bar starts there (>= 0.7 of the oracle where it is 0.4-0.9)
ORACLE_FLOOR = 0.4


def to_base64_png(fig: Figure) -> str:
    """Render and close a figure -> base64 PNG text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def relabel_to_truth(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Predicted labels (N,) renamed to their Hungarian-matched true state (N,); unmatched
    predicted classes get numbers after the last true state."""
    from tomohet.metrics import hungarian_mapping

    t_vals, p_vals = np.unique(true), np.unique(pred)
    mapping = hungarian_mapping(true, pred)
    p_enc = np.searchsorted(p_vals, pred)
    extra = iter(range(len(t_vals), len(t_vals) + len(p_vals)))
    lut = np.array([t_vals[mapping[j]] if j in mapping else next(extra)
                    for j in range(len(p_vals))])
    return lut[p_enc]


def embed_2d(latent: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    z = np.asarray(latent, dtype=float)
    z = z[:, None] if z.ndim == 1 else z
    if z.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(-1, 1, len(z))
        return np.c_[z[:, 0], jitter], ["z0", "jitter"]
    if z.shape[1] == 2:
        return z, ["z0", "z1"]
    zc = z - z.mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    return zc @ vt[:2].T, ["PC1", "PC2"]


def latent_scatter(latent: np.ndarray, color: np.ndarray, discrete: bool, title: str,
                   seed: int = 0) -> str:
    """2D PCA (or the axes themselves) of a (N, Z) latent, coloured by truth (N,)."""
    xy, axes = embed_2d(latent, seed)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    if discrete:
        for s in np.unique(color):
            sel = color == s
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, label=f"state {s}")
        ax.legend(fontsize=7, markerscale=2, loc="best")
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=color, s=6, cmap="viridis", alpha=0.8)
        fig.colorbar(sc, ax=ax, label="true c0")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    return to_base64_png(fig)


def confusion_heatmap(cm: np.ndarray, title: str) -> str:
    """(K_true, K_pred) counts as an annotated heat map."""
    fig, ax = plt.subplots(figsize=(0.6 * cm.shape[1] + 2.2, 0.5 * cm.shape[0] + 1.8))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                color="white" if v > cm.max() / 2 else "black")
    ax.set(xlabel="predicted class (matched order)", ylabel="true state", title=title,
           xticks=range(cm.shape[1]), yticks=range(cm.shape[0]))
    return to_base64_png(fig)


def population_bars(true_frac: np.ndarray, pred_frac: np.ndarray, title: str) -> str:
    """True vs predicted (matched) class fractions, (K,) each."""
    k = max(len(true_frac), len(pred_frac))
    t = np.pad(true_frac, (0, k - len(true_frac)))
    p = np.pad(pred_frac, (0, k - len(pred_frac)))
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(0.5 * k + 2.8, 2.8))
    ax.bar(x - 0.2, t, 0.4, label="true")
    ax.bar(x + 0.2, p, 0.4, label="predicted")
    ax.set(xticks=x, xlabel="state", ylabel="fraction", title=title)
    ax.legend(fontsize=7)
    return to_base64_png(fig)


def central_slices(rows: Sequence[tuple[Sequence[str], np.ndarray]], title: str) -> str:
    """Central XY, XZ and YZ slices: one row per (labels (K,), (K, D, D, D) stack), one
    block of three panels per volume."""
    n_rows = len(rows)
    k = max(len(v) for _, v in rows)
    fig, axes = plt.subplots(n_rows, 3 * k, figsize=(1.1 * 3 * k, 1.25 * n_rows + 0.4),
                             squeeze=False)
    for r, (labels, vols) in enumerate(rows):
        for j in range(k):
            for a in range(3):
                ax = axes[r, 3 * j + a]
                ax.axis("off")
                if j >= len(vols):
                    continue
                v = np.asarray(vols[j], dtype=float)
                c = v.shape[0] // 2
                ax.imshow((v[c], v[:, c], v[:, :, c])[a], cmap="gray")
                if a == 0:
                    ax.set_title(labels[j], fontsize=7, loc="left")
    fig.suptitle(title, fontsize=9)
    return to_base64_png(fig)


def fsc_curves(curves: Mapping[str, np.ndarray], pixel_size_A: float, title: str) -> str:
    """Mean (+/- sd) per-particle FSC of each method; curves name -> (N, D//2+1)."""
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for name, c in curves.items():
        c = np.asarray(c)
        f = np.arange(c.shape[1]) / (2 * (c.shape[1] - 1) * pixel_size_A)
        m, s = c.mean(0), c.std(0)
        ax.plot(f, m, label=name)
        ax.fill_between(f, m - s, m + s, alpha=0.15)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="spatial frequency (1/A)", ylabel="FSC vs true volume", ylim=(-0.1, 1.02),
           title=title)
    ax.legend(fontsize=7)
    return to_base64_png(fig)


def tomogram_maps(x: np.ndarray, y: np.ndarray, tomogram: np.ndarray, truth: np.ndarray,
                  pred: np.ndarray | None, truth_discrete: bool, pred_discrete: bool,
                  max_tomograms: int = 4) -> str:
    """Particle positions x, y (N,) in A per tomogram (N,), coloured by the truth (N,)
    (left) and by the prediction (N,) (right: matched labels or latent PC1)."""
    tomos = list(dict.fromkeys(np.asarray(tomogram).tolist()))[:max_tomograms]
    cols = 1 if pred is None else 2
    fig, axes = plt.subplots(len(tomos), cols, figsize=(3.0 * cols, 2.6 * len(tomos)),
                             squeeze=False)
    for r, t in enumerate(tomos):
        sel = np.asarray(tomogram) == t
        panels = [(truth, "truth", truth_discrete), (pred, "predicted", pred_discrete)]
        for c, (vals, lab, disc) in enumerate(panels[:cols]):
            ax = axes[r, c]
            kw = {"cmap": "tab10", "vmin": 0, "vmax": 9} if disc else {"cmap": "viridis"}
            ax.scatter(x[sel], y[sel], c=np.asarray(vals)[sel], s=8, **kw)
            ax.set_title(f"{t}: {lab}", fontsize=8)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
    return to_base64_png(fig)


def ladder_heatmaps(table, metric: str = "ari") -> str:
    """Heat maps of ``metric`` over component mass (rows) x SNR (columns, hardest right):
    one panel per method (rows of panels; the oracle first, left out for ``*_frac_oracle``)
    and per particle count N (columns of panels). ``table``: a DataFrame with columns
    ``method``, ``mass``, ``snr``, ``n`` and ``metric``; missing cells are grey. For a
    ``*_frac_oracle`` metric each cell also names the oracle's ARI, and cells where it is
    under :data:`ORACLE_FLOOR` are hatched: there the data hold little to find and the
    fraction is mostly noise."""
    frac = metric.endswith("_frac_oracle")
    df = table[table["method"] != "oracle"] if frac else table
    methods = list(dict.fromkeys(df["method"]))
    ns = sorted(set(df["n"]))
    masses = sorted(set(df["mass"]))
    snrs = sorted(set(df["snr"]), reverse=True)
    fig, axes = plt.subplots(max(len(methods), 1), max(len(ns), 1), squeeze=False,
                             figsize=(0.75 * len(snrs) * max(len(ns), 1) + 1.6,
                                      0.5 * len(masses) * max(len(methods), 1) + 1.2))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    image = None
    if not methods:
        axes[0, 0].text(0.5, 0.5, "no method besides the oracle", ha="center", va="center")
        axes[0, 0].axis("off")
    for r, method in enumerate(methods):
        for c, n in enumerate(ns):
            ax = axes[r, c]
            grid = _cell_grid(df, method, n, metric, masses, snrs)
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0,
                              origin="lower", aspect="auto")
            oracle = _cell_grid(table, "oracle", n, "ari", masses, snrs) if frac else None
            for (i, j), v in np.ndenumerate(grid):
                if not np.isfinite(v):
                    continue
                text = f"{v:.2f}"
                if oracle is not None and np.isfinite(oracle[i, j]):
                    text += f"\nof {oracle[i, j]:.2f}"
                    if oracle[i, j] < ORACLE_FLOOR:
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                               hatch="///", edgecolor="#888888", lw=0))
                ax.text(j, i, text, ha="center", va="center", fontsize=6 if frac else 7,
                        color="black" if v > 0.6 else "white")
            ax.set_xticks(range(len(snrs)), [f"{s:g}" for s in snrs], fontsize=7)
            ax.set_yticks(range(len(masses)), [f"{100 * m:g}%" for m in masses], fontsize=7)
            ax.set_title(f"{method}, N={n}", fontsize=8)
            if r == len(methods) - 1:
                ax.set_xlabel("SNR at 0 deg", fontsize=7)
            if c == 0:
                ax.set_ylabel("component mass", fontsize=7)
    if image is not None:
        label = "ARI / oracle ARI" if metric == "ari_frac_oracle" else metric
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    if frac:
        fig.suptitle(f"'of': the oracle's ARI; hatched: oracle ARI < {ORACLE_FLOOR:g}",
                     fontsize=7)
    return to_base64_png(fig)


def _cell_grid(table, method: str, n, column: str, masses: list, snrs: list) -> np.ndarray:
    """(masses, snrs) ``column`` of ``method``'s rows at ``n`` particles (NaN where
    missing or not finite, and for cells outside ``masses`` x ``snrs``)."""
    grid = np.full((len(masses), len(snrs)), np.nan)
    if column not in table.columns:
        return grid
    sel = table[(table["method"] == method) & (table["n"] == n)]
    for _, row in sel.iterrows():
        v = row.get(column)
        if (v is not None and np.isfinite(float(v)) and row["mass"] in masses
                and row["snr"] in snrs):
            grid[masses.index(row["mass"]), snrs.index(row["snr"])] = float(v)
    return grid


def class_differences(pairs: Sequence[tuple[int, int]], where: np.ndarray, curves: np.ndarray,
                      threshold: np.ndarray, z: np.ndarray, pixel_size_A: float, title: str,
                      max_pairs: int = 6) -> str:
    """Per pair of classes (rows): maximum projections along z, y and x of the where-map
    (P, D, D, D) and the difference FSC (P, D//2+1) against the noise curve (D//2+1,);
    z (P,) scores in the row titles."""
    rows = min(len(pairs), max_pairs)
    fig, axes = plt.subplots(rows, 4, figsize=(7.6, 1.7 * rows + 0.4), squeeze=False)
    vmax = float(np.max(where[:rows])) if rows else 1.0
    freq = np.arange(curves.shape[1]) / (2 * (curves.shape[1] - 1) * pixel_size_A)
    for r in range(rows):
        a, b = pairs[r]
        for ax_i, axis in enumerate((0, 1, 2)):
            ax = axes[r, ax_i]
            ax.imshow(where[r].max(axis=axis), cmap="magma", vmin=0, vmax=max(vmax, 1e-12))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{a} vs {b}: max along {'zyx'[axis]}", fontsize=7)
        ax = axes[r, 3]
        ax.plot(freq[1:], curves[r, 1:], lw=1, label="difference FSC")
        ax.plot(freq[1:], threshold[1:], lw=0.8, ls="--", color="grey", label="3 sigma noise")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"z = {z[r]:.1f}", fontsize=7)
        ax.tick_params(labelsize=6)
        if r == 0:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return to_base64_png(fig)

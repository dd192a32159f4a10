"""Convergence diagnostics of a VAE run: history tables and the loss/drift figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["write_history", "plot_convergence", "load_history"]


def write_history(history: list[dict[str, Any]], out: Path) -> None:
    """``history.json`` and ``history.csv`` (one row per epoch)."""
    from tomohet.io.atomic import atomic_write_text

    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))


def load_history(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def _col(history: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)


def plot_convergence(history: list[dict[str, Any]], path: Path) -> None:
    """Loss (and its KL part), latent drift between epochs and active dimensions (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure

    if not history:
        return
    ep = _col(history, "epoch")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    axes[0].plot(ep, _col(history, "loss"), marker="o", label="loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss per particle")
    ax2 = axes[0].twinx()
    ax2.plot(ep, _col(history, "kl"), color="tab:orange", marker=".", label="KL")
    ax2.set_ylabel("KL (nats)", color="tab:orange")
    axes[1].semilogy(ep, _col(history, "drift"), marker="o")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("latent drift (rel. RMS)")
    axes[2].plot(ep, _col(history, "active_dims"), marker="o")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("active latent dims")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)

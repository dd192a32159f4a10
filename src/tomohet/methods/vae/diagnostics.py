"""Convergence diagnostics of a VAE run: per-epoch latent numbers, the history tables and
the loss/drift figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["latent_diagnostics", "collapse_warning", "history_row", "write_history",
           "plot_convergence", "load_history"]


def latent_diagnostics(mu: torch.Tensor, logvar: torch.Tensor,
                       previous: torch.Tensor | None) -> dict[str, float]:
    """Convergence numbers of one epoch's latents.

    ``drift``: RMS change of the posterior means since the previous epoch over the RMS
    spread of the means (0 = frozen); ``active_dims``: latent dimensions whose means vary
    across particles more than 1% of the prior variance (Burda et al.'s active units);
    ``kl_per_particle``: mean KL to the prior (nats); ``posterior_std``: mean posterior std.
    """
    spread = float(mu.std(0).pow(2).sum().sqrt()) if len(mu) > 1 else 0.0
    drift = float("nan")
    if previous is not None and previous.shape == mu.shape and spread > 0:
        drift = float((mu - previous).pow(2).sum(1).mean().sqrt()) / spread
    var_mu = mu.var(0) if len(mu) > 1 else torch.zeros(mu.shape[1])
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1).mean()
    return {"drift": drift, "active_dims": int((var_mu > 0.01).sum()),
            "kl_per_particle": float(kl), "posterior_std": float((0.5 * logvar).exp().mean()),
            "latent_spread": spread}


def collapse_warning(diag: dict[str, float]) -> str | None:
    """A message when the latent carries (almost) no information, else None."""
    if diag["active_dims"] == 0 or diag["kl_per_particle"] < 0.05:
        return (f"latent collapse: {diag['active_dims']} active dimensions, "
                f"KL {diag['kl_per_particle']:.3f} nats per particle -- the decoder ignores z; "
                "lower --beta, train longer, or check poses/CTF")
    return None


def history_row(epoch: int, stats: dict[str, float], diag: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch + 1}
    row.update({k: float(v) for k, v in stats.items()})
    row.update({k: (int(v) if k == "active_dims" else float(v)) for k, v in diag.items()})
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in row.items()}


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

"""VAE checkpoints: plain tensors and containers via ``torch.save`` (no pickled objects;
loadable with ``weights_only=True``), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tomohet.io.atomic import atomic_path
from tomohet.methods.vae.model import TiltVAE

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "model_from_checkpoint"]


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model: TiltVAE, optimizer: torch.optim.Optimizer | None,
                    epoch: int, history: list[dict[str, Any]], mu: torch.Tensor,
                    extra: dict[str, Any] | None = None) -> Path:
    """``torch.save`` of plain tensors/containers (loadable with ``weights_only=True``)."""
    payload = {"model": model.state_dict(), "config": dict(model.config), "epoch": int(epoch),
               "history": [dict(h) for h in history], "mu": mu.detach().cpu(),
               "optimizer": None if optimizer is None else optimizer.state_dict(),
               "extra": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The highest-epoch ``epoch_NNN.pt`` in ``folder/checkpoints``, or None."""
    ck = sorted(Path(folder, "checkpoints").glob("epoch_*.pt"))
    return ck[-1] if ck else None


def model_from_checkpoint(ck: dict[str, Any], device: torch.device | str = "cpu") -> TiltVAE:
    model = TiltVAE(ck["config"]).to(device)
    model.load_state_dict(ck["model"])
    model.set_consensus(model.consensus)
    return model

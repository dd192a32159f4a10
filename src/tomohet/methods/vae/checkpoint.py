"""VAE checkpoints: plain tensors and containers via ``torch.save`` (no pickled objects;
loadable with ``weights_only=True``), written atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from tomohet.io.atomic import atomic_path
from tomohet.methods.vae.model import TiltVAE

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "model_from_checkpoint",
           "resume_point"]

M = TypeVar("M", bound=torch.nn.Module)


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


def resume_point(checkpoint_dir: str | Path | None, resume: bool, lr: float,
                 device: torch.device | str, build: Callable[[dict[str, Any], Any], M]
                 ) -> tuple[dict[str, Any], M, torch.optim.Optimizer] | None:
    """Where a VAE run resumes (vae and vae3d): the latest checkpoint in
    ``checkpoint_dir`` when ``resume``, the model ``build(checkpoint, device)`` makes of
    it, and Adam at ``lr`` with the saved optimizer state; None for a fresh start."""
    path = latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    if path is None:
        return None
    ck = load_checkpoint(path, device)
    ck["path"] = str(path)
    model = build(ck, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if ck.get("optimizer") is not None:
        opt.load_state_dict(ck["optimizer"])
    return ck, model, opt

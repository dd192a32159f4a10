"""Decode maps from a trained tilt-series VAE run folder and write them as MRC.

A run folder is what ``tomohet train vae`` leaves: ``weights.pt`` (model state and
config, a plain ``torch.save`` dict read with ``weights_only=True``) and ``latent.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch

from tomohet.methods.vae.model import TiltVAE

__all__ = ["load_run", "decode", "write_volumes", "central_slices"]


def load_run(run_dir: str | Path, device: torch.device | str = "cpu"
             ) -> tuple[TiltVAE, dict, pd.DataFrame]:
    """-> (model in eval mode, checkpoint dict without the state, latent table)."""
    from tomohet.methods.vae.checkpoint import load_checkpoint, model_from_checkpoint

    run = Path(run_dir)
    path: Path | None = run / "weights.pt"
    if path is None or not path.exists():
        from tomohet.methods.vae.checkpoint import latest_checkpoint

        path = latest_checkpoint(run)  # a run stopped before the end
        if path is None:
            raise FileNotFoundError(f"{run}: no weights.pt or checkpoints/epoch_*.pt")
    ck = load_checkpoint(path, device)
    if ck["config"].get("arch") == "vae3d":  # a `tomohet train vae3d` run: same interface
        from tomohet.methods.vae3d import model_from_checkpoint as vae3d_model

        model = cast(TiltVAE, vae3d_model(ck, device).eval())
    else:
        model = model_from_checkpoint(ck, device).eval()
    info = {k: v for k, v in ck.items() if k not in ("model", "optimizer")}
    latent_csv = run / "latent.csv"
    if latent_csv.exists():
        table = pd.read_csv(latent_csv)
    else:  # from a checkpoint: particle names unknown
        mu = ck["mu"].numpy()
        table = pd.DataFrame(mu, columns=[f"z{i}" for i in range(mu.shape[1])])
        table.insert(0, "particle", [str(i) for i in range(len(mu))])
    return model, info, table


def decode(model: TiltVAE, z: np.ndarray, chunk: int = 4) -> torch.Tensor:
    """Maps (n, D, D, D) at latents (n, Z) on the CPU."""
    return model.volumes(torch.as_tensor(np.asarray(z, dtype=np.float32)), chunk=chunk)


def write_volumes(model: TiltVAE, z: np.ndarray, out_dir: str | Path, prefix: str,
                  pixel_size_A: float) -> tuple[list[Path], torch.Tensor]:
    """Decode ``z`` (n, Z) and write ``prefix_001.mrc`` ... -> (paths, volumes)."""
    from tomohet.io import write_mrc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vols = decode(model, z)
    paths = []
    for i, v in enumerate(vols):
        p = out / f"{prefix}_{i + 1:03d}.mrc"
        write_mrc(p, v.numpy(), pixel_size_A)
        paths.append(p)
    return paths, vols


def central_slices(vols: torch.Tensor) -> np.ndarray:
    """(n, D, D, D) -> (n, D, 3 D) the central z, y and x sections side by side."""
    v = vols.float().numpy()
    c = v.shape[-1] // 2
    return np.concatenate([v[:, c], v[:, :, c], v[:, :, :, c]], axis=-1)

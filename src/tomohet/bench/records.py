"""One method's result on one benchmark data set: outputs for the report, scores, resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tomohet.metrics import ParticleFSC

__all__ = ["MethodRun"]


@dataclass
class MethodRun:
    """One method on one data set: outputs for the report and the scores.

    labels (N,) or None; latent (N, Z) or None; class_volumes (K, D, D, D) or None;
    fsc per-particle FSC of ``fsc_index`` particles or None.
    """

    method: str
    dataset: str
    method_kind: str = ""
    labels: np.ndarray | None = None
    latent: np.ndarray | None = None
    kept: np.ndarray | None = None  # (N,) bool: particles the method calls reliable
    class_volumes: torch.Tensor | None = None
    half_volumes: torch.Tensor | None = None  # (K, 2, D, D, D) per-class half-set maps
    fsc: ParticleFSC | None = None
    fsc_index: np.ndarray | None = None
    examples: tuple[torch.Tensor, torch.Tensor] | None = None  # (pred, true) (E, D, D, D)
    scores: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def row(self, dataset_kind: str) -> dict[str, Any]:
        """Flat leaderboard row."""
        return {"method": self.method, "dataset": self.dataset, "dataset_kind": dataset_kind,
                "method_kind": self.method_kind, "status": "error" if self.error else "ok",
                **self.scores, **self.resources, "error": self.error or "",
                "warning": "; ".join(self.warnings)}

"""What a simulated benchmark data set can tell a method besides its particles.

``nma`` fits normal modes of an atomic model: on data simulated from one (``structure``
kind ``atoms``) the benchmark gives it that model's file (the simulator centres the
model on its centre of mass, as ``nma`` does by default). No other method takes a
``model`` parameter.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dataset_params"]


def dataset_params(ds: Any, param_names: list[str]) -> dict[str, Any]:
    """Parameters a method can take from the data set ``ds`` (a BenchDataset)."""
    out: dict[str, Any] = {}
    config = getattr(getattr(ds, "source", None), "config", None)
    structure = getattr(config, "structure", None) or {}
    if "model" in param_names and structure.get("kind") == "atoms" and structure.get("model") \
            and not structure.get("select"):
        from tomohet.sim.structures import structure_path

        out["model"] = str(structure_path(structure["model"]))
    return out

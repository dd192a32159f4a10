"""Heterogeneity methods. Importing :func:`load_all` registers every built-in method."""

from __future__ import annotations

import importlib

from tomohet.methods.base import REGISTRY, HeterogeneityMethod, get_method, register

__all__ = ["REGISTRY", "HeterogeneityMethod", "get_method", "register", "load_all"]

# modules that register methods; a module listed here but not yet present is skipped
_BUILTIN = ["ml", "shc", "linear", "vae"]


def load_all() -> dict[str, type[HeterogeneityMethod]]:
    for mod in _BUILTIN:
        try:
            importlib.import_module(f"tomohet.methods.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tomohet.methods.{mod}":
                raise
    return REGISTRY

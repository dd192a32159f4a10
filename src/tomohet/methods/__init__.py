"""Heterogeneity methods. :func:`load_all` imports (and so registers) every built-in method."""

from __future__ import annotations

from typing import Any

from tomohet.methods.base import REGISTRY, HeterogeneityMethod, register

__all__ = ["REGISTRY", "HeterogeneityMethod", "get_method", "register", "load_all"]


def load_all() -> dict[str, type[HeterogeneityMethod]]:
    """Import the modules that register the built-in methods -> :data:`REGISTRY`."""
    import tomohet.methods.flow  # noqa: F401
    import tomohet.methods.linear  # noqa: F401  (wmdpca, ccmatrix, multiscale, ppca2d)
    import tomohet.methods.ml  # noqa: F401  (ml2d, ml3d, occupancy)
    import tomohet.methods.nma  # noqa: F401
    import tomohet.methods.shc  # noqa: F401
    import tomohet.methods.vae  # noqa: F401  (vae, vae-et)
    import tomohet.methods.vae3d  # noqa: F401

    return REGISTRY


def get_method(name: str, **params: Any) -> HeterogeneityMethod:
    """A built-in or registered method by name, built with ``params``."""
    load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**params)

"""The focus mask of a method: the words a mask argument may be (``"auto"``, ``"none"``,
``"sphere"``), the automatically discovered region, and a user's map.

``"auto"`` is the region found by :mod:`tomohet.methods.discovery` (consensus from keyed
half sets, noise-whitened residual maps, calibrated excess-variance detection): the place
where particles differ when the variation is local. The linear methods (wmdpca,
multiscale, ppca2d) and the tilt-series VAE take their features there; ml2d / ml3d / shc
run discovery themselves (:mod:`tomohet.methods.ml`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tomohet.io.mrc import load_volume
from tomohet.methods.base import ParticleSet, default_mask

__all__ = ["OFF_WORDS", "is_auto", "is_off", "discovered_focus", "resolve_focus"]

# words a mask argument may be instead of a map or an mrc path: "auto" (the discovered
# focus), and the words that give the method without a focus ("sphere" for the difference
# methods, "none" elsewhere; both accepted)
OFF_WORDS = ("none", "sphere")


def is_auto(mask: Any) -> bool:
    """Whether a ``mask`` argument asks for the automatic focus mask (``"auto"``)."""
    return isinstance(mask, str) and mask.strip().lower() == "auto"


def is_off(mask: Any) -> bool:
    """Whether a ``mask`` argument asks for no focus: None, ``"none"`` or ``"sphere"``
    (the soft sphere of the difference methods, no restriction elsewhere)."""
    return mask is None or (isinstance(mask, str) and mask.strip().lower() in OFF_WORDS)


def discovered_focus(particles: ParticleSet, k: int, seed: int, batch_size: int,
                     device: torch.device) -> tuple[torch.Tensor | None, Any]:
    """The automatic focus mask of :mod:`tomohet.methods.discovery`.

    Consensus from keyed half sets, noise-whitened residual maps against it, their
    excess-variance z-map and the significant region (see :func:`~tomohet.methods.
    discovery.discover_with`). -> (focus (D, D, D) in [0, 1] when the variation is local,
    else None; the :class:`~tomohet.methods.discovery.Discovery`). None means "use the
    method's default": whole-subunit differences (region ``"large"``) or nothing found
    above noise (``"none"``) leave a method as it is without ``"auto"``.
    """
    from tomohet.data.keys import half_sets
    from tomohet.methods.discovery import discover_with
    from tomohet.methods.em import EMConfig, EMEngine

    o, n = particles.optics, particles.n_particles
    cfg = EMConfig(n_classes=max(2, k), batch_size=batch_size, device=str(device))
    engine = EMEngine(particles, cfg, np.arange(n),
                      reference_mask=default_mask(o.box, None, o.pixel_size_A, device))
    halves = half_sets(particles.names, particles.tomo_names, seed, particles.table)
    setup = discover_with(engine, max(2, k), "auto", "random", halves, seed)
    focus = None if setup.focus is None else setup.focus.detach().float().cpu().clamp(0, 1)
    return focus, setup.discovery


def resolve_focus(spec: Any, particles: ParticleSet, k: int, seed: int, batch_size: int,
                  device: torch.device, who: str, what: str = "focus_mask"
                  ) -> tuple[torch.Tensor | None, Any]:
    """A method's focus from its argument ``spec``: ``"auto"`` (:func:`discovered_focus`),
    ``"none"`` / ``"sphere"`` / None (no focus), a map (D, D, D) or an mrc path.

    -> (mask (D, D, D) float in [0, 1] on the CPU, or None; the discovery, or None unless
    ``"auto"``). ``who`` and ``what`` name the method and argument in errors.
    """
    if is_off(spec):
        return None, None
    if is_auto(spec):
        return discovered_focus(particles, k, seed, batch_size, device)
    if isinstance(spec, str) and not spec.endswith(".mrc"):
        raise ValueError(f"{who}: {what} must be 'auto', 'none', a map or an mrc path, "
                         f"got {spec!r}")
    m = load_volume(spec)
    assert m is not None
    box = particles.optics.box
    if tuple(m.shape) != (box,) * 3:
        raise ValueError(f"{who}: {what} shape {tuple(m.shape)} does not match box {box}")
    return m.float().cpu().clamp(0, 1), None

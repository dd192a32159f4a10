"""Simulated benchmark data sets from the simulator's presets (:mod:`tomohet.sim`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tomohet.bench.datasets import BenchDataset, from_simulated

__all__ = ["simulate_presets", "QUICK_OVERRIDES"]

# applied with --quick, each only when the preset's config has that field
QUICK_OVERRIDES: dict[str, Any] = {"n_particles": 120, "n_tomograms": 2, "box": 24, "n_tilts": 15}
# accepted by get_preset although not config fields
_PRESET_KEYWORDS = {"n_tilts"}


def _config_fields(config: Any) -> set[str]:
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return set(config)
    return set(vars(config))


def simulate_presets(names: Sequence[str], seed: int = 0, quick: bool = False,
                     overrides: dict[str, Any] | None = None) -> list[BenchDataset]:
    """Simulate each named preset (quick overrides applied where they fit, then the
    caller's ``overrides`` of config fields, e.g. ``{"n_particles": 600}``)."""
    if not names:
        return []
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    out = []
    for name in names:
        try:  # parametrised families (ladder-...) are not all listed
            fields = _config_fields(get_preset(name)) | _PRESET_KEYWORDS
        except KeyError as exc:
            raise ValueError(str(exc.args[0] if exc.args else exc)) from exc
        changes: dict[str, Any] = {}
        if quick:
            changes = {k: v for k, v in QUICK_OVERRIDES.items() if k in fields}
        unknown = set(overrides or {}) - fields
        if unknown:
            raise ValueError(f"preset {name!r} has no field(s) {sorted(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
        changes.update(overrides or {})
        sim = simulate(get_preset(name, **changes), seed=seed)
        out.append(from_simulated(sim, name))
    return out

"""The small-component ladder: methods and the oracle over a grid of simulator presets.

A ladder cell is one preset ``ladder-mMM-snrS-nN`` (or ``ladder1-...``, one component) of
:mod:`tomohet.sim.presets`: a large complex whose states differ by removable components
of a given fraction of its mass, at a given SNR and number of particles. Every cell is
simulated with the same seed, the oracle is always run, then each method; the scores
(ARI and the rest of :func:`~tomohet.bench.scoring.score_outputs`) and ARI as a fraction
of the oracle's give the **detection limit** of each method over mass x SNR, per N.

Resumable: each cell's results are cached in ``OUT/ladder_cells/<preset>.json``, written
after every method, with the settings that produced them (seed, preset overrides, oracle
grid, the method's parameters). A rerun with the same out folder reuses every cached
(cell, method) whose settings match and simulates a cell only when something is missing.
Outputs: ``ladder.csv``/``ladder.json`` (one row per cell x method, with the cell's
``mass``, ``snr``, ``n``, ``components``), ``leaderboard.csv``/``.json`` (the same rows),
``ladder_ari.png`` / ``ladder_ari_frac_oracle.png`` heat maps and ``report.html``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.bench.datasets import BenchDataset
from tomohet.bench.leaderboard import write_rows
from tomohet.bench.progress import Eta, SayStream
from tomohet.bench.runner import resolve_methods, run_method, run_oracle_row
from tomohet.bench.scoring import oracle_fractions, score_run
from tomohet.io.atomic import atomic_write_text

__all__ = ["LadderCell", "ladder_cells", "ladder_methods", "run_ladder", "simulate_cell",
           "CELL_COLUMNS", "CACHE_DIR"]

CELL_COLUMNS = ["cell", "mass", "snr", "n", "components"]
CACHE_DIR = "ladder_cells"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class LadderCell:
    """One ladder preset: component mass fraction, SNR at 0 deg, particles, components."""

    mass: float
    snr: float
    n: int
    components: int = 2

    @property
    def name(self) -> str:
        from tomohet.sim.presets import ladder_name

        return ladder_name(self.mass, self.snr, self.n, self.components)

    def columns(self) -> dict[str, Any]:
        return {"cell": self.name, "mass": self.mass, "snr": self.snr, "n": self.n,
                "components": self.components}


def ladder_cells(masses: Sequence[float] | None = None, snrs: Sequence[float] | None = None,
                 ns: Sequence[int] | None = None, components: int = 2) -> list[LadderCell]:
    """Cells of the grid masses x SNRs x Ns (each default: the standard ladder's values)."""
    from tomohet.sim.presets import LADDER_MASSES, LADDER_NS, LADDER_SNRS

    if components not in (1, 2):
        raise ValueError(f"ladder components must be 1 or 2, got {components}")
    ms = list(LADDER_MASSES if masses is None else masses)
    ss = list(LADDER_SNRS if snrs is None else snrs)
    nn = list(LADDER_NS if ns is None else ns)
    bad = [m for m in ms if not 0 < m < 1] + [s for s in ss if not s > 0] + \
        [n for n in nn if int(n) < 2]
    if bad or not (ms and ss and nn):
        raise ValueError(f"ladder values out of range or empty: {bad or 'empty list'} "
                         "(mass fractions in (0, 1), SNR > 0, N >= 2)")
    return [LadderCell(float(m), float(s), int(n), components) for n in nn for m in ms
            for s in ss]


def ladder_methods(methods: str | Sequence[str] | None) -> list[str]:
    """Registered method names to run besides the oracle (``"oracle"`` alone or ``""``:
    none; ``"all"``/None: every registered method)."""
    if isinstance(methods, str) and methods != "all":
        methods = [m for m in methods.split(",") if m.strip() and m.strip() != "oracle"]
    elif methods is not None and not isinstance(methods, str):
        methods = [m for m in methods if m != "oracle"]
    return resolve_methods(methods)


def simulate_cell(cell: LadderCell, seed: int, overrides: dict[str, Any]) -> BenchDataset:
    """The cell's data set (its preset with ``overrides`` of config fields)."""
    from tomohet.bench.presets import simulate_presets

    return simulate_presets([cell.name], seed=seed, overrides=overrides)[0]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=repr))


def _method_signature(name: str, params: dict[str, Any] | None) -> Any:
    """What a cached method result depends on besides the data: its bench parameters."""
    if name == "oracle":
        return {}
    from tomohet.methods import REGISTRY

    return _jsonable({"bench_params": REGISTRY[name].bench_params, "params": params or {}})


class _CellCache:
    """Cached results of one cell: ``results`` maps a method to ``{"signature", "row"}``;
    loaded only when written with the same data settings ``data_sig``."""

    def __init__(self, path: Path, cell: LadderCell, data_sig: Any) -> None:
        self.path, self.cell, self.data_sig = path, cell, data_sig
        self.results: dict[str, Any] = {}
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(payload, dict) and payload.get("data") == data_sig \
                and isinstance(payload.get("results"), dict):
            self.results = payload["results"]

    def missing(self, signatures: dict[str, Any]) -> list[str]:
        """Methods without a cached result made with the given parameter signature."""
        return [n for n, sig in signatures.items()
                if not isinstance(self.results.get(n), dict)
                or self.results[n].get("signature") != sig]

    def save(self, name: str, signature: Any, row: dict[str, Any]) -> None:
        self.results[name] = {"signature": signature, "row": row}
        payload = {"data": self.data_sig, "cell": self.cell.columns(), "results": self.results}
        atomic_write_text(self.path, json.dumps(payload, indent=1) + "\n")


def _result_row(run: Any) -> dict[str, Any]:
    row = run.row("discrete")
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in _jsonable(row).items()}


def _run_cell(cell: LadderCell, todo: list[str], seed: int, device: torch.device | None,
              overrides: dict[str, Any], params: dict[str, dict[str, Any]],
              oracle_grid: int, save: Callable[[str, dict[str, Any]], None],
              say: Callable[[str], None]) -> None:
    """Simulate the cell and run ``todo`` (oracle first), saving each result."""
    t0 = time.perf_counter()
    ds = simulate_cell(cell, seed, overrides)
    say(f"[ladder] {cell.name:<28} simulated in {time.perf_counter() - t0:.1f}s")
    for name in todo:
        if name == "oracle":
            run = run_oracle_row(ds, seed, device, n_grid=oracle_grid)
        else:
            say(f"[ladder] {cell.name:<28} {name:<12} fitting ...")
            run = run_method(name, ds, seed, device, params=params.get(name))
        score_run(run, ds, seed)
        save(name, _result_row(run))
        status = f"error: {run.error}" if run.error else f"ARI {run.scores.get('ari', 0):.3f}"
        say(f"[ladder] {cell.name:<28} {name:<12} "
            f"{run.resources.get('wall_s', 0):7.1f}s  {status}")


def _cell_rows(cell: LadderCell, results: dict[str, Any], names: list[str]
               ) -> list[dict[str, Any]]:
    """Rows of one cell: oracle first, then ``names``, with ``*_frac_oracle`` added."""
    oracle = results["oracle"]["row"]
    rows = []
    for name in ["oracle"] + names:
        row = {**cell.columns(), **results[name]["row"]}
        if row.get("status") == "ok" and oracle.get("status") == "ok":
            scores = {k: v for k, v in row.items() if isinstance(v, int | float)}
            ref = {k: v for k, v in oracle.items() if isinstance(v, int | float)}
            row.update(oracle_fractions(scores, ref))
        rows.append(row)
    return rows


def run_ladder(
    out_dir: str | Path,
    methods: str | Sequence[str] | None,
    cells: Sequence[LadderCell],
    seed: int = 0,
    device: torch.device | None = None,
    overrides: dict[str, Any] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    oracle_grid: int = 12,
    report: bool = True,
    log: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Run the oracle and ``methods`` on every cell (reusing cached results, see module
    doc); write ``ladder.csv/json``, ``leaderboard.csv/json``, the heat maps and
    ``report.html``. -> the ladder table (one row per cell x method)."""
    out = Path(out_dir)
    (out / CACHE_DIR).mkdir(parents=True, exist_ok=True)
    names = ladder_methods(methods)
    say = log or (lambda _msg: None)
    overrides, params = dict(overrides or {}), dict(params or {})
    rows: list[dict[str, Any]] = []
    eta = Eta("ladder", len(cells), stream=SayStream(say))
    for cell in cells:
        data_sig = _jsonable({"version": _CACHE_VERSION, "preset": cell.name, "seed": seed,
                              "overrides": overrides, "oracle_grid": oracle_grid})
        cache = _CellCache(out / CACHE_DIR / f"{cell.name}.json", cell, data_sig)
        sigs = {n: _method_signature(n, params.get(n)) for n in ["oracle"] + names}
        todo = cache.missing(sigs)
        if todo:
            _run_cell(cell, todo, seed, device, overrides, params, oracle_grid,
                      lambda name, row: cache.save(name, sigs[name], row), say)  # noqa: B023
        else:
            say(f"[ladder] {cell.name:<28} cached ({len(sigs)} results)")
        rows.extend(_cell_rows(cell, cache.results, names))
        eta.step(cell.name)
    meta = {"seed": seed, "methods": ["oracle"] + names, "cells": [c.name for c in cells],
            "overrides": _jsonable(overrides), "device": str(device or "cpu"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    df = write_rows(rows, out, meta, stem="ladder", first=CELL_COLUMNS)
    board = write_rows([{"dataset": r["cell"], **r} for r in rows], out, meta)
    _write_heatmaps(df, out)
    if report:
        from tomohet.bench.report import write_report

        write_report(out / "report.html", [], board, meta, ladder=df)
    return df


def _write_heatmaps(df: pd.DataFrame, out: Path) -> None:
    from tomohet.bench import figures
    from tomohet.io.atomic import atomic_write_bytes

    for metric in ("ari", "ari_frac_oracle"):
        if metric in df.columns:
            png = figures.ladder_heatmaps(df, metric)
            atomic_write_bytes(out / f"ladder_{metric}.png", base64.b64decode(png))

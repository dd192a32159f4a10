"""Run every registered method (and the oracle) on benchmark data sets and score them.

For each data set: the oracle row first (``method = "oracle"``), then each method built as
``REGISTRY[name](**cls.bench_params, random_state=seed)``, fitted, and asked for
``predict`` / ``transform`` / ``particle_volumes`` (whatever it implements). Wall time and
peak memory are measured around fit + outputs. A method that raises is recorded with its
error and the run continues. Results go to ``leaderboard.csv``, ``leaderboard.json`` and
``report.html`` in the output folder.

The pieces: :mod:`~tomohet.bench.memory` (wall time and peak memory),
:mod:`~tomohet.bench.scoring` (scores against the truth and the oracle),
:mod:`~tomohet.bench.leaderboard` (the files), :mod:`~tomohet.bench.records` (one row).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from tomohet.bench.datasets import BenchDataset
from tomohet.bench.leaderboard import write_leaderboard
from tomohet.bench.memory import measure
from tomohet.bench.progress import Eta, SayStream
from tomohet.bench.records import MethodRun
from tomohet.bench.scoring import oracle_fractions, score_run, scoring_mask
from tomohet.metrics import ParticleFSC, per_particle_fsc

if TYPE_CHECKING:
    from tomohet.methods.base import HeterogeneityMethod

__all__ = ["run_method", "run_oracle_row", "run_bench", "resolve_methods"]


def resolve_methods(spec: str | Sequence[str] | None) -> list[str]:
    """``"all"``/None -> every registered method; ``"a,b"`` or a list -> checked names."""
    from tomohet.methods import REGISTRY, load_all

    load_all()
    if spec is None or spec == "all":
        return sorted(REGISTRY)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(sorted(REGISTRY)) or 'none'}")
    return names


def _optional(fn: Callable[[], Any]) -> Any:
    """fn() or None when the method does not implement it."""
    try:
        return fn()
    except NotImplementedError:
        return None


def _fsc_index(ds: BenchDataset, n_max: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 17)
    n = ds.n_particles
    return np.sort(rng.choice(n, size=min(n, n_max), replace=False))


def _particle_fsc(ds: BenchDataset, vols: torch.Tensor, index: np.ndarray) -> ParticleFSC:
    mask = scoring_mask(ds.particles.optics.box)
    return per_particle_fsc(vols.detach().float().cpu(), ds.true_volumes(index).float(),
                            ds.pixel_size_A, mask=mask)


def _method_params(cls: type[HeterogeneityMethod], seed: int, device: torch.device | None,
                   n_states: int = 0, overrides: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """``bench_params``, the true number of states as ``n_classes`` (when the data set has
    more than one state), then the user's ``overrides`` (unknown names ignored)."""
    params = dict(cls.bench_params)
    names = cls._param_names()
    if "n_classes" in names and n_states > 1:
        params["n_classes"] = n_states
    params.update({k: v for k, v in (overrides or {}).items() if k in names})
    if "progress" in names:
        params.setdefault("progress", False)
    if "device" in names and device is not None:
        params["device"] = str(device)
    params["random_state"] = seed
    return params


def _check_outputs(run: MethodRun, n: int) -> None:
    if run.labels is not None:
        run.labels = np.asarray(run.labels).reshape(-1)
        if run.labels.shape != (n,):
            raise ValueError(f"predict returned {run.labels.shape}, expected ({n},)")
    if run.latent is not None:
        z = np.asarray(run.latent, dtype=float)
        run.latent = z[:, None] if z.ndim == 1 else z
        if run.latent.shape[0] != n or run.latent.ndim != 2:
            raise ValueError(f"transform returned {z.shape}, expected ({n}, Z)")


def run_method(name: str, ds: BenchDataset, seed: int = 0, device: torch.device | None = None,
               fsc_particles: int = 128, params: dict[str, Any] | None = None,
               save_to: Path | None = None) -> MethodRun:
    """Fit registered method ``name`` on ``ds`` and collect outputs; never raises.
    ``save_to``: a folder for the method's own outputs (``model.save``: maps, star,
    assignments or latent)."""
    from tomohet.methods import REGISTRY

    cls = REGISTRY[name]
    run = MethodRun(method=name, dataset=ds.name, method_kind=cls.kind)
    model = None
    with measure(device) as stats:
        try:
            from tomohet.bench.models import dataset_params

            given = {**dataset_params(ds, cls._param_names()), **(params or {})}
            model = cls(**_method_params(cls, seed, device, ds.n_states, given))
            model.fit(ds.particles)
            run.labels = _optional(model.predict)
            kept = getattr(model, "consistent_", None)  # e.g. SHC consistency cleaning
            run.kept = None if kept is None else np.asarray(kept, dtype=bool).reshape(-1)
            run.latent = _optional(model.transform)
            if run.latent is None and run.labels is not None and ds.coords is not None:
                proba = _optional(model.predict_proba)  # rows of filtered particles: NaN
                run.latent = None if proba is None else np.nan_to_num(
                    np.asarray(proba, dtype=float), nan=1.0 / max(np.shape(proba)[-1], 1))
            _check_outputs(run, ds.n_particles)
        except Exception as exc:  # a failing method is a result, not a crash
            run.error = f"{type(exc).__name__}: {exc}"
    run.resources = dict(stats)
    if run.error is None and model is not None:
        try:
            cv = getattr(model, "class_volumes_", None)
            run.class_volumes = None if cv is None else torch.as_tensor(cv).detach().cpu()
            hv = getattr(model, "half_volumes_", None)
            run.half_volumes = None if hv is None else torch.as_tensor(hv).detach().cpu()
            idx = _fsc_index(ds, fsc_particles, seed)
            vols = model.particle_volumes(idx) if ds.has_volumes else None
            if vols is not None:
                vols = torch.as_tensor(vols).detach().float().cpu()
                run.fsc, run.fsc_index = _particle_fsc(ds, vols, idx), idx
                run.examples = (vols[:4], ds.true_volumes(idx[:4]).float())
        except Exception as exc:  # the other scores still stand
            run.warnings.append(f"no per-particle FSC: {type(exc).__name__}: {exc}")
        if save_to is not None:
            try:
                model.save(save_to, ds.particles)
            except Exception as exc:  # the scores still stand
                run.warnings.append(f"outputs not saved: {type(exc).__name__}: {exc}")
    return run


def run_oracle_row(ds: BenchDataset, seed: int = 0, device: torch.device | None = None,
                   n_grid: int = 12, fsc_particles: int = 128) -> MethodRun:
    """The oracle (:mod:`tomohet.bench.oracle`) as a leaderboard row; never raises."""
    from tomohet.bench.oracle import run_oracle

    run = MethodRun(method="oracle", dataset=ds.name, method_kind="oracle")
    with measure(device) as stats:
        try:
            res = run_oracle(ds, n_grid=n_grid, seed=seed, device=device or "cpu")
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
    run.resources = dict(stats)
    if run.error:
        return run
    run.labels = res.labels if ds.n_states > 1 else None
    run.latent = res.latent()
    if ds.kind == "discrete":
        run.class_volumes = ds.volumes_for(res.grid_states, None).cpu()
    idx = _fsc_index(ds, fsc_particles, seed)
    m = res.map_index[idx]
    gc = None if res.grid_coords is None else res.grid_coords[m]
    vols = ds.volumes_for(res.grid_states[m], gc).float().cpu()
    run.fsc, run.fsc_index = _particle_fsc(ds, vols, idx), idx
    run.examples = (vols[:4], ds.true_volumes(idx[:4]).float())
    return run


def run_bench(
    datasets: Sequence[BenchDataset],
    out_dir: str | Path,
    methods: str | Sequence[str] | None = "all",
    seed: int = 0,
    device: torch.device | None = None,
    oracle: bool = True,
    oracle_grid: int = 12,
    report: bool = True,
    log: Callable[[str], None] | None = print,
    params: dict[str, dict[str, Any]] | None = None,
    keep_outputs: bool = False,
) -> pd.DataFrame:
    """Benchmark ``methods`` (plus the oracle) on ``datasets``; write leaderboard + report.

    -> the leaderboard DataFrame (one row per method x data set), also written to
    ``out_dir/leaderboard.csv`` / ``.json``; ``out_dir/report.html`` with ``report``.
    ``params`` maps a method name to parameters replacing its ``bench_params``.
    ``keep_outputs``: each method's own outputs in ``out_dir/<method>`` (one data set) or
    ``out_dir/<data set>/<method>``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = resolve_methods(methods)
    say = log or (lambda _msg: None)
    runs: list[tuple[MethodRun, BenchDataset]] = []
    eta = Eta("bench", len(datasets) * (len(names) + int(oracle)),
              stream=SayStream(say))
    for ds in datasets:
        ds_runs = []
        if oracle and ds.has_volumes:
            ds_runs.append(run_oracle_row(ds, seed, device, n_grid=oracle_grid))
        if oracle:
            eta.step(f"{ds.name} oracle")
        for name in names:
            say(f"[bench] {ds.name:<16} {name:<12} fitting ...")
            keep = (out / name if len(datasets) == 1 else out / ds.name / name
                    ) if keep_outputs else None
            ds_runs.append(run_method(name, ds, seed, device,
                                       params=(params or {}).get(name), save_to=keep))
            eta.step(f"{ds.name} {name}")
        for run in ds_runs:
            score_run(run, ds, seed)
        ref = next((r.scores for r in ds_runs if r.method == "oracle" and not r.error), None)
        for run in ds_runs:
            if ref is not None and not run.error:
                run.scores.update(oracle_fractions(run.scores, ref))
            status = f"error: {run.error}" if run.error else _summary(run.scores)
            say(f"[bench] {ds.name:<16} {run.method:<12} "
                f"{run.resources.get('wall_s', 0):7.2f}s  {status}")
            runs.append((run, ds))
    meta = {"seed": seed, "methods": names, "datasets": [d.name for d in datasets],
            "device": str(device or "cpu"), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    df = write_leaderboard(runs, out, meta)
    if report:
        from tomohet.bench.report import write_report

        write_report(out / "report.html", runs, df, meta)
    return df


def _summary(scores: dict[str, Any]) -> str:
    keys = ("ari", "rank_corr", "neigh_sim", "fsc_auc")
    return "  ".join(f"{k}={scores[k]:.3f}" for k in keys if k in scores)

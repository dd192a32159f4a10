"""Run every registered method (and the oracle) on benchmark data sets and score them.

For each data set: the oracle row first (``method = "oracle"``), then each method built as
``REGISTRY[name](**cls.bench_params, random_state=seed)``, fitted, and asked for
``predict`` / ``transform`` / ``particle_volumes`` (whatever it implements). Wall time and
peak memory are measured around fit + outputs. A method that raises is recorded with its
error and the run continues. Results go to ``leaderboard.csv``, ``leaderboard.json`` and
``report.html`` in the output folder.
"""

from __future__ import annotations

import json
import math
import resource
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from tomohet.bench.datasets import BenchDataset
from tomohet.bench.records import MethodRun
from tomohet.bench.scoring import (
    HIGHER_IS_BETTER,
    METRIC_LABELS,
    oracle_fractions,
    score_outputs,
)
from tomohet.io.atomic import atomic_write_text
from tomohet.metrics import ParticleFSC, per_particle_fsc

if TYPE_CHECKING:
    from tomohet.methods.base import HeterogeneityMethod

__all__ = ["MethodRun", "measure", "run_method", "run_oracle_row", "run_bench",
           "resolve_methods", "write_leaderboard", "write_rows"]

_FIRST_COLUMNS = ["method", "dataset", "dataset_kind", "method_kind", "status"]


def _max_rss_MB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_MB() -> float | None:
    """Resident size now (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _RssSampler(threading.Thread):
    """Samples the resident size every ``interval`` s: catches torch CPU allocations that
    tracemalloc does not see and that are freed before the block ends."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.start_MB = _current_rss_MB()
        self.peak_MB = self.start_MB or 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            now = _current_rss_MB()
            if now is not None:
                self.peak_MB = max(self.peak_MB, now)

    def finish(self) -> float:
        """Stop; -> peak growth of the resident size over the start (MB)."""
        self._stop_event.set()
        self.join()
        now = _current_rss_MB()
        if self.start_MB is None or now is None:
            return 0.0
        return max(self.peak_MB, now) - self.start_MB


@contextmanager
def measure(device: torch.device | None = None) -> Iterator[dict[str, float]]:
    """Wall time and peak memory of the block -> dict filled on exit.

    ``py_peak_MB``: tracemalloc peak (Python + numpy allocations); ``rss_growth_MB``: peak
    growth of the resident size (sampled every 20 ms; torch CPU tensors included);
    ``rss_max_MB``: the process's high-water resident size (``ru_maxrss``);
    ``gpu_peak_MB``: torch CUDA peak; ``peak_mem_MB``: the largest of the Python peak, the
    RSS growth and the GPU peak.
    """
    stats: dict[str, float] = {}
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sampler = _RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    try:
        yield stats
    finally:
        wall = time.perf_counter() - t0
        growth = sampler.finish()
        py_peak = tracemalloc.get_traced_memory()[1] / 2**20
        if not was_tracing:
            tracemalloc.stop()
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else 0.0
        stats.update(wall_s=wall, peak_mem_MB=max(py_peak, growth, gpu), py_peak_MB=py_peak,
                     rss_growth_MB=growth, rss_max_MB=_max_rss_MB(), gpu_peak_MB=gpu)


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
    from tomohet.physics.fourier import soft_sphere_mask

    box = ds.particles.optics.box
    mask = soft_sphere_mask(box, max(box / 2 - 3, box / 4), edge_px=2.0)
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
               fsc_particles: int = 128, params: dict[str, Any] | None = None) -> MethodRun:
    """Fit registered method ``name`` on ``ds`` and collect outputs; never raises."""
    from tomohet.methods import REGISTRY

    cls = REGISTRY[name]
    run = MethodRun(method=name, dataset=ds.name, method_kind=cls.kind)
    model = None
    with measure(device) as stats:
        try:
            model = cls(**_method_params(cls, seed, device, ds.n_states, params))
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


def score_run(run: MethodRun, ds: BenchDataset, seed: int) -> None:
    """Fill ``run.scores`` (metrics of :func:`score_outputs` plus FSC)."""
    if run.error:
        return
    try:
        run.scores = score_outputs(ds.states, ds.coords, run.labels, run.latent, seed)
    except ValueError as exc:  # e.g. a NaN latent: keep the class scores, note why
        try:
            run.scores = score_outputs(ds.states, ds.coords, run.labels, None, seed)
            run.warnings.append(f"latent not scored: {exc}")
        except ValueError as exc2:
            run.error = f"scoring: {exc2}"
    if run.kept is not None and run.labels is not None and run.kept.any():
        from tomohet.metrics import ari

        k = run.kept & (run.labels >= 0)
        run.scores["kept_frac"] = float(run.kept.mean())
        run.scores["ari_kept"] = float(ari(ds.states[k], run.labels[k]))
    if run.fsc is not None:
        run.scores["fsc_auc"] = run.fsc.mean_auc
        run.scores["fsc_res_A"] = float(np.mean(run.fsc.resolution_A))


def _json_safe(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_leaderboard(runs: Sequence[tuple[MethodRun, BenchDataset]], out_dir: Path,
                      meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """``leaderboard.csv`` and ``leaderboard.json`` (``{"meta": ..., "rows": [...]}``)."""
    return write_rows([run.row(ds.kind) for run, ds in runs], out_dir, meta)


def write_rows(rows: Sequence[dict[str, Any]], out_dir: Path, meta: dict[str, Any] | None = None,
               stem: str = "leaderboard", first: Sequence[str] = ()) -> pd.DataFrame:
    """Rows -> ``<stem>.csv`` and ``<stem>.json``: columns ``first``, the leaderboard's
    leading columns and metrics, the rest, then resources and errors."""
    df = pd.DataFrame(list(rows))
    order = list(first) + _FIRST_COLUMNS + list(METRIC_LABELS) + ["ari_source"] + [
        f"{m}_frac_oracle" for m in HIGHER_IS_BETTER]
    lead = list(dict.fromkeys(c for c in order if c in df.columns))
    last = [c for c in ("wall_s", "peak_mem_MB", "py_peak_MB", "rss_growth_MB", "rss_max_MB",
                        "gpu_peak_MB", "error", "warning") if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead + last] + last]
    atomic_write_text(out_dir / f"{stem}.csv", df.to_csv(index=False))
    records = [{k: _json_safe(v) for k, v in r.items()} for r in df.to_dict("records")]
    payload = {"meta": meta or {}, "rows": records}
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
    return df


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
) -> pd.DataFrame:
    """Benchmark ``methods`` (plus the oracle) on ``datasets``; write leaderboard + report.

    -> the leaderboard DataFrame (one row per method x data set), also written to
    ``out_dir/leaderboard.csv`` / ``.json``; ``out_dir/report.html`` with ``report``.
    ``params`` maps a method name to parameters replacing its ``bench_params``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = resolve_methods(methods)
    say = log or (lambda _msg: None)
    runs: list[tuple[MethodRun, BenchDataset]] = []
    for ds in datasets:
        ds_runs = []
        if oracle and ds.has_volumes:
            ds_runs.append(run_oracle_row(ds, seed, device, n_grid=oracle_grid))
        for name in names:
            say(f"[bench] {ds.name:<16} {name:<12} fitting ...")
            ds_runs.append(run_method(name, ds, seed, device,
                                       params=(params or {}).get(name)))
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

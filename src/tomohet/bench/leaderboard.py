"""The leaderboard files: ``leaderboard.csv`` and ``leaderboard.json`` with a fixed column order."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.bench.datasets import BenchDataset
from tomohet.bench.records import MethodRun
from tomohet.bench.scoring import HIGHER_IS_BETTER, METRIC_LABELS
from tomohet.io.atomic import atomic_write_text

__all__ = ["write_leaderboard", "write_rows"]

_FIRST_COLUMNS = ["method", "dataset", "dataset_kind", "method_kind", "status"]


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



"""Score any tool's per-particle output against a simulation's ``truth.csv``.

Predictions: CSV with ``particle`` and ``class`` and/or latent columns ``z0, z1, ...``;
or a RELION-style STAR file with ``rlnClassNumber`` keyed by ``rlnTomoParticleName`` (or
``rlnGroupName``). Particles are matched by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.bench.datasets import truth_coords, truth_key, truth_states
from tomohet.bench.scoring import score_outputs

__all__ = ["read_predictions", "evaluate_predictions"]

_NAME_KEYS = ["particle", "rlnTomoParticleName", "rlnGroupName", "name", "rlnImageName"]
_CLASS_KEYS = ["class", "rlnClassNumber", "label"]


def _latent_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if len(c) > 1 and c[0] == "z" and c[1:].isdigit()]
    return sorted(cols, key=lambda c: int(c[1:]))


def _star_table(path: Path) -> pd.DataFrame:
    import starfile

    data = starfile.read(path, always_dict=True)
    for block in data.values():
        if isinstance(block, pd.DataFrame) and any(k in block.columns for k in _CLASS_KEYS):
            return block
    raise ValueError(f"{path}: no STAR block with rlnClassNumber")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction file -> DataFrame with ``particle`` (str) and ``class`` and/or
    ``z0..`` columns; ValueError naming what is missing."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: file not found")
    if p.suffix == ".star":
        raw = _star_table(p)
    else:
        raw = pd.read_csv(p, sep=None, engine="python")
    key = next((k for k in _NAME_KEYS if k in raw.columns), None)
    if key is None:
        raise ValueError(f"{p}: no particle-name column (one of {', '.join(_NAME_KEYS)})")
    out = pd.DataFrame({"particle": raw[key].astype(str).str.strip()})
    cls = next((k for k in _CLASS_KEYS if k in raw.columns), None)
    if cls is not None:
        lab = raw[cls]
        if lab.dtype.kind == "f":  # unassigned particles (NaN) become class -1
            lab = lab.fillna(-1).astype(np.int64)
        out["class"] = lab.to_numpy()
    for c in _latent_columns(raw):
        out[c] = raw[c].to_numpy(float)
    if cls is None and len(out.columns) == 1:
        raise ValueError(f"{p}: neither a class column ({', '.join(_CLASS_KEYS)}) nor "
                         "latent columns z0, z1, ...")
    return out


def evaluate_predictions(truth: pd.DataFrame, pred: pd.DataFrame, seed: int = 0,
                         n_examples: int = 5) -> dict[str, Any]:
    """Match by particle name and score (see :func:`~tomohet.bench.scoring.score_outputs`).

    -> dict with counts of matched/unmatched particles (and examples), ``scores`` and,
    with classes, the ``confusion_matrix`` (true states x predicted classes).
    """
    key = truth_key(truth, pred["particle"])
    t = truth.drop(columns=[c for c in ("particle", "class") if c != key and c in truth])
    t = t.rename(columns={key: "particle"})
    t = t.assign(particle=t["particle"].astype(str).str.strip()).drop_duplicates("particle")
    dup = int(pred["particle"].duplicated().sum())
    pr = pred.drop_duplicates("particle")
    both = t.merge(pr, on="particle", how="inner", suffixes=("", "_pred"))
    miss_t = sorted(set(t["particle"]) - set(pr["particle"]))
    miss_p = sorted(set(pr["particle"]) - set(t["particle"]))
    if both.empty:
        raise ValueError(
            "no particle names match between truth and prediction: truth e.g. "
            f"{t['particle'].head(3).tolist()}, prediction e.g. {pr['particle'].head(3).tolist()}")
    labels = both["class"].to_numpy() if "class" in both.columns else None
    zc = _latent_columns(pr)
    latent = both[zc].to_numpy(float) if zc else None
    states, coords = truth_states(both), truth_coords(both)
    result: dict[str, Any] = {
        "n_truth": len(t), "n_pred": len(pr), "n_matched": len(both),
        "n_duplicate_pred": dup,
        "unmatched_truth": len(miss_t), "unmatched_truth_examples": miss_t[:n_examples],
        "unmatched_pred": len(miss_p), "unmatched_pred_examples": miss_p[:n_examples],
        "scores": score_outputs(states, coords, labels, latent, seed),
    }
    if labels is not None and len(np.unique(states)) > 1:
        from tomohet.metrics import confusion_matrix

        result["confusion_matrix"] = confusion_matrix(states, labels).tolist()
    return result

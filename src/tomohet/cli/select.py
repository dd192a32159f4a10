"""``tomohet select``: a subset of a run's particles, written in the input's own format."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.cli.common import HelpFormatter, refuse_overwrite, stamp_config
from tomohet.data.sources import DataError

EXAMPLE = """examples:
  tomohet select ml2d/ --classes 2,3 --out class23/
  tomohet select ml2d/ --classes 1 --min-prob 0.9
  tomohet select pca/ --cluster 2
  tomohet select vae/ --latent-box z0:-1:1,z1:0:2 --out region/ --force

The subset is written as the run's input was (RELION 5 particles star + optimisation
set naming the input's tomograms star; Warp/tomoDRGN per-tilt star; RELION 3.1/4 star;
STOPGAP motivelist; Dynamo table): the selected rows are copied unchanged, so columns of
other tools survive. Criteria combine (a particle must meet all of them).
"""

__all__ = ["add_parser", "run", "parse_latent_box", "select_names"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "select", help="write a subset of a run's particles in the input's format",
        description="Select particles of a classify / embed / train run by class, cluster, "
        "latent region or posterior probability and write them for the next tool.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("run", help="run folder (output of classify, embed or train)")
    p.add_argument("--classes", default=None, help="1-based classes, e.g. 2,3")
    p.add_argument("--cluster", default=None,
                   help="1-based clusters of an embedding (assignments.csv), e.g. 2 or 1,4")
    p.add_argument("--latent-box", default=None,
                   help="inclusive ranges of latent coordinates, dim:low:high, e.g. "
                   "z0:-1:1,z1:0:2")
    p.add_argument("--min-prob", type=float, default=None,
                   help="keep particles whose largest class posterior is at least this")
    p.add_argument("--out", default=None,
                   help="output folder (default: RUN/select_<criteria>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def parse_latent_box(text: str) -> dict[str, tuple[float, float]]:
    """``"z0:-1:1,z1:0:2"`` -> {"z0": (-1, 1), "z1": (0, 2)}; DataError if malformed."""
    out: dict[str, tuple[float, float]] = {}
    for part in text.split(","):
        fields = part.strip().split(":")
        try:
            if len(fields) != 3 or not fields[0]:
                raise ValueError
            lo, hi = float(fields[1]), float(fields[2])
        except ValueError:
            raise DataError(f"--latent-box: {part.strip()!r} is not dim:low:high "
                            "(e.g. z0:-1:1)") from None
        if not lo <= hi:
            raise DataError(f"--latent-box: {part.strip()!r}: low {lo:g} is above high {hi:g}")
        dim = fields[0].strip()
        out[f"z{dim}" if dim.isdigit() else dim] = (lo, hi)
    return out


def _numbers(text: str, flag: str) -> list[int]:
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise DataError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None
    if not out:
        raise DataError(f"{flag}: no number given")
    return out


def _labels(run: Any, flag: str, wanted: list[int], exist: list[int]) -> pd.Series:
    table = run.assignments
    where = run.path / "assignments.csv"
    if table is None or "class" not in table.columns:
        raise DataError(f"{where}: missing or without a class column: run {run.path} has no "
                        + ("classes" if flag == "--classes" else "clusters"))
    bad = [c for c in wanted if c not in exist]
    if bad:
        kind = "class" if flag == "--classes" else "cluster"
        raise DataError(f"{flag}: {kind} {bad[0]} does not exist in run {run.path} "
                        f"({kind}es: {', '.join(map(str, exist)) or 'none'})")
    return pd.Series(table["class"].to_numpy(np.int64),
                     index=table["particle"].astype(str).to_numpy())


def select_names(run: Any, args: argparse.Namespace) -> list[str]:
    """Names of the particles that meet every criterion given (in assignments order)."""
    masks: list[pd.Series] = []
    if args.classes is not None or args.cluster is not None:
        flag = "--classes" if args.classes is not None else "--cluster"
        wanted = _numbers(args.classes if args.classes is not None else args.cluster, flag)
        table = run.assignments
        values = sorted(int(v) for v in set(table["class"]) if int(v) >= 1) \
            if table is not None and "class" in table.columns else []
        exist = sorted(set(run.classes) | set(values)) if flag == "--classes" else values
        labels = _labels(run, flag, wanted, exist)
        masks.append(labels.isin(wanted))
    if args.latent_box is not None:
        masks.append(_latent_mask(run, parse_latent_box(args.latent_box)))
    if args.min_prob is not None:
        table = run.assignments
        if table is None or "max_prob" not in table.columns:
            raise DataError(f"{run.path / 'assignments.csv'}: no max_prob column: --min-prob "
                            "needs a run with class posteriors")
        masks.append(pd.Series(table["max_prob"].to_numpy(np.float64) >= args.min_prob,
                               index=table["particle"].astype(str).to_numpy()))
    if not masks:
        raise DataError("select: give --classes, --cluster, --latent-box or --min-prob")
    keep = pd.concat(masks, axis=1, sort=False).fillna(False).astype(bool).all(axis=1)
    return [str(n) for n in keep.index[keep.to_numpy()]]


def _latent_mask(run: Any, box: dict[str, tuple[float, float]]) -> pd.Series:
    table = run.latent if run.latent is not None else run.assignments
    where = run.path / ("latent.csv" if run.latent is not None else "assignments.csv")
    dims = [c for c in (table.columns if table is not None else []) if re.fullmatch(r"z\d+", c)]
    if not dims:
        raise DataError(f"{where}: no latent coordinates (z0, z1, ...): --latent-box needs "
                        "an embed or train run")
    bad = [d for d in box if d not in dims]
    if bad:
        raise DataError(f"--latent-box: latent dimension {bad[0]} does not exist in {where} "
                        f"(dimensions: {', '.join(dims)})")
    assert table is not None
    ok = np.ones(len(table), dtype=bool)
    for d, (lo, hi) in box.items():
        v = table[d].to_numpy(np.float64)
        ok &= (v >= lo) & (v <= hi)
    return pd.Series(ok, index=table["particle"].astype(str).to_numpy())


def _default_out(run: Path, args: argparse.Namespace) -> Path:
    parts = []
    for flag in ("classes", "cluster", "latent_box", "min_prob"):
        v = getattr(args, flag)
        if v is not None:
            parts.append(f"{flag.replace('_', '')}-{v}")
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", "_".join(parts))
    return run / f"select_{name}"


def run(args: argparse.Namespace) -> int:
    from tomohet.analysis.runs import load_run_folder, read_run_particles
    from tomohet.io.subset import write_subset

    folder = load_run_folder(args.run)
    names = select_names(folder, args)
    table = folder.assignments if folder.assignments is not None else folder.latent
    total = 0 if table is None else len(table)
    if not names:
        raise DataError(f"{folder.path}: the selection is empty (0 of {total} particles meet "
                        "the criteria); nothing written")
    out = Path(args.out) if args.out else _default_out(Path(args.run), args)
    if out.exists() and any(out.iterdir()):
        refuse_overwrite([out], args.force)
    particles = read_run_particles(folder)
    written = write_subset(particles, names, out, datadir=folder.input.get("datadir"))
    stamp_config(out, "select", vars(args))
    fmt = particles.meta.get("format")
    print(f"select: {len(names)} of {total} particles -> {out} ({fmt}: "
          + ", ".join(p.name for p in written if p.suffix in (".star", ".tbl")) + ")")
    return 0

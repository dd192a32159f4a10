"""Reading a run folder back: what ``classify``/``embed``/``train`` left behind.

A run folder holds ``config.json`` (command, arguments and an ``input`` record: the
absolute paths of the particle file, tomograms star and data folder, and the format the
reader detected), ``assignments.csv`` and/or ``latent.csv`` keyed by particle name, and
maps (``class_NNN.mrc`` with ``class_NNN_half1/2.mrc``; ``mean.mrc`` for linear
embeddings). A re-classification (hierarchical run) adds a ``parent`` record: the parent
run folder and the classes it took (1-based).

Everything missing or malformed is a :class:`~tomohet.data.sources.DataError` naming the
file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.sources import DataError

__all__ = ["RunFolder", "load_run_folder", "input_record", "read_run_particles",
           "select_by_names"]


def input_record(data: str | Path, tomograms: str | Path | None = None,
                 datadir: str | Path | None = None, fmt: str | None = None) -> dict[str, Any]:
    """The ``input`` block of ``config.json``: absolute paths so that the run can be
    re-read from any working directory, and the format the reader used."""
    def absolute(p: str | Path | None) -> str | None:
        return None if p is None else str(Path(p).resolve())

    return {"path": absolute(data), "tomograms": absolute(tomograms),
            "datadir": absolute(datadir), "format": fmt}


@dataclass
class RunFolder:
    """One run folder as written by a tomohet command."""

    path: Path
    command: str
    config: dict[str, Any]
    input: dict[str, Any]
    parent: dict[str, Any] | None
    assignments: pd.DataFrame | None  # particle, class (1-based), ...
    latent: pd.DataFrame | None  # particle, z0..zk
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[int]:
        """Class numbers (1-based) with a map ``class_NNN.mrc`` in the folder."""
        return sorted(int(p.stem.split("_")[1])
                      for p in self.path.glob("class_[0-9][0-9][0-9].mrc"))

    def class_map(self, c: int) -> Path:
        p = self.path / f"class_{c:03d}.mrc"
        if not p.exists():
            raise DataError(f"{p}: class map of class {c} not found in run folder {self.path}")
        return p

    def half_maps(self, c: int) -> tuple[Path, Path] | None:
        h = (self.path / f"class_{c:03d}_half1.mrc", self.path / f"class_{c:03d}_half2.mrc")
        return h if h[0].exists() and h[1].exists() else None

    def labels(self) -> pd.Series:
        """1-based class per particle name (0 or below: filtered out)."""
        if self.assignments is None or "class" not in self.assignments.columns:
            raise DataError(f"{self.path / 'assignments.csv'}: no column 'class' "
                            "(run folder has no discrete assignments)")
        return pd.Series(self.assignments["class"].to_numpy(np.int64),
                         index=self.assignments["particle"].astype(str).to_numpy())


def _read_csv(path: Path, what: str) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        # names as written: "007" must stay "007" to match its particle
        df = pd.read_csv(path, dtype={"particle": str})
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from exc
    if "particle" not in df.columns:
        raise DataError(f"{path}: no column 'particle'")
    names = df["particle"].astype(str)
    if names.duplicated().any():
        dup = names[names.duplicated()].iloc[0]
        raise DataError(f"{path}: field particle: duplicate name {dup!r}")
    if "class" in df.columns and not pd.api.types.is_integer_dtype(df["class"]):
        raise DataError(f"{path}: field class is not an integer column")
    return df


def _input_of(cfg: dict[str, Any], cfg_path: Path) -> dict[str, Any]:
    """The recorded input; runs written before the record existed give ``config.data``
    (relative to the working directory they were started in)."""
    rec = cfg.get("input")
    if isinstance(rec, dict) and rec.get("path"):
        return rec
    args = cfg.get("config") or {}
    data = args.get("data")
    if not isinstance(data, str) or not data:
        raise DataError(f"{cfg_path}: field input.path (or config.data) missing: the run "
                        "does not say which particles it read")
    return input_record(data, args.get("tomograms"), args.get("datadir"))


def load_run_folder(path: str | Path, need: tuple[str, ...] = ()) -> RunFolder:
    """Read a run folder. ``need``: files that must be there (e.g. ``("assignments.csv",)``)
    -> DataError naming the first missing one."""
    run = Path(path)
    if not run.is_dir():
        raise DataError(f"{run}: not a run folder (no such directory)")
    cfg_path = run / "config.json"
    if not cfg_path.exists():
        raise DataError(f"{cfg_path}: missing: {run} is not a complete tomohet run folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, OSError) as exc:
        raise DataError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict) or not isinstance(cfg.get("command"), str):
        raise DataError(f"{cfg_path}: field command missing")
    for name in need:
        if not (run / name).exists():
            raise DataError(f"{run / name}: missing: the run folder {run} is incomplete "
                            "(did the run finish?)")
    parent = cfg.get("parent")
    if parent is not None and (not isinstance(parent, dict) or "run" not in parent
                               or "classes" not in parent):
        raise DataError(f"{cfg_path}: field parent must hold 'run' and 'classes'")
    return RunFolder(
        path=run.resolve(), command=cfg["command"], config=cfg.get("config") or {},
        input=_input_of(cfg, cfg_path), parent=parent,
        assignments=_read_csv(run / "assignments.csv", "assignments"),
        latent=_read_csv(run / "latent.csv", "latent coordinates"))


def read_run_particles(run: RunFolder):
    """The run's particle set, re-read from its recorded input with the same reader.
    A hierarchical run's set is the subset its assignments name."""
    from tomohet.io import read_particles

    rec = run.input
    src = Path(rec["path"])
    if not src.exists():
        raise DataError(f"{run.path / 'config.json'}: field input.path: {src} no longer exists")
    particles = read_particles(src, fmt=rec.get("format") or "auto",
                               tomograms=rec.get("tomograms"), datadir=rec.get("datadir"))
    table = run.assignments if run.assignments is not None else run.latent
    if run.parent is not None and table is not None:
        particles = select_by_names(particles, table["particle"].astype(str).tolist(),
                                    run.path / "assignments.csv")
    return particles


def select_by_names(particles, names: list[str], where: Path):
    """The subset of ``particles`` named by ``names`` (in that order); a name not in the
    set -> DataError."""
    index = {n: i for i, n in enumerate(particles.names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise DataError(f"{where}: field particle: {missing[0]!r} is not in the input "
                        f"particle set" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                           else ""))
    return particles.subset(np.array([index[n] for n in names], dtype=np.int64))


def parse_classes(text: str | None, where: str = "--classes") -> list[int]:
    """``"2,3"`` -> [2, 3] (1-based class numbers)."""
    if text is None or not str(text).strip():
        raise DataError(f"{where}: give the classes to re-classify, e.g. --classes 3")
    try:
        out = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError as exc:
        raise DataError(f"{where}: {text!r} is not a comma-separated list of class "
                        "numbers") from exc
    if not out or min(out) < 1:
        raise DataError(f"{where}: class numbers start at 1, got {text!r}")
    return out


@dataclass
class ClassSubset:
    """The particles of some classes of a run, their map, and the links to record."""

    particles: Any
    reference: np.ndarray  # population-weighted mean of the classes' maps
    parent: dict[str, Any]  # {"run": abs path, "classes": [...]}
    input: dict[str, Any]  # the root input record (re-readable)


def class_subset(run_dir: str | Path, classes: list[int]) -> ClassSubset:
    """Particles of ``classes`` (1-based) of the run in ``run_dir`` and the map to start
    from (that class's map; several classes: their population-weighted mean)."""
    from tomohet.io import read_mrc

    run = load_run_folder(run_dir, need=("assignments.csv",))
    labels = run.labels()
    have = run.classes
    bad = [c for c in classes if c not in have]
    if bad:
        raise DataError(f"{run.path}: class {bad[0]} does not exist in this run (classes with "
                        f"a map: {', '.join(map(str, have)) or 'none'})")
    chosen = labels[labels.isin(classes)]
    if len(chosen) == 0:
        raise DataError(f"{run.path / 'assignments.csv'}: field class: no particle is in "
                        f"class(es) {classes}")
    full = read_run_particles(run)
    particles = select_by_names(full, chosen.index.tolist(), run.path / "assignments.csv")
    maps, weights = [], []
    for c in classes:
        arr, _ = read_mrc(run.class_map(c))
        maps.append(np.asarray(arr, dtype=np.float64))
        weights.append(float((chosen == c).sum()))
    w = np.asarray(weights) / max(sum(weights), 1.0)
    reference = np.tensordot(w, np.stack(maps), axes=1).astype(np.float32)
    return ClassSubset(particles, reference, {"run": str(run.path), "classes": classes},
                       dict(run.input))

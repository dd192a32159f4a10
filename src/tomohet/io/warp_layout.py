"""Which particle, tilt series and tilt slot each row of a per-tilt-image star belongs to.

Warp/M, tomoDRGN and cryoDRGN-ET write one row per tilt image. They differ in how the
tilt series of a row is named, and the readers must not lose images over it:

* Tilt series of a row, in order of preference:

  1. ``rlnTomoName`` when present;
  2. else ``rlnMicrographName`` when it names the tilt *series*: some particle has several
     rows with the same micrograph name;
  3. else ``rlnMicrographName`` names each tilt *image* (every (micrograph, particle group)
     pair has one row, as in cryoDRGN-ET/Warp exports where ``..._21.mrc`` is tilt 21): the
     tilt series is the micrograph's file name without its extension and its trailing
     per-tilt index (``TS_01_021.mrc`` -> ``TS_01``; the folder is kept only where two
     folders hold the same name). This is used only if every micrograph name has such an
     index and stripping it really groups tilt images into series;
  4. else each particle group is its own tilt series (then two images of one group at the
     same dose and tilt are refused: the group names may be reused across tilt series
     and only ``rlnTomoName`` can tell them apart);
  5. without ``rlnTomoName`` and ``rlnMicrographName`` every row is in one tilt series.

* Particle of a row: the pair (tilt series, group), where the group is
  ``rlnTomoParticleName`` or ``rlnGroupName``. Group names that restart at "1" in each
  tilt series therefore stay separate particles. A particle is named by its group, or by
  ``<tilt series>/<group>`` for every particle when some group name occurs in more than one
  tilt series (so names stay unique); ``meta["warp_group_of_name"]`` keeps the original
  group of each name for writing back. Particles are numbered in order of first appearance.

* Tilt slot of a row: where micrographs name tilt images, the rank of its micrograph among
  the micrographs of its tilt series, ordered by (mean dose, mean tilt, name); otherwise
  the rank of its (dose, tilt) pair among its tilt series' distinct pairs sorted by dose
  (a tilt series where one particle has two images with the same pair falls back to the
  rank of the image within its particle, by dose then tilt). Slot 0 is the lowest dose and
  a slot is the same tilt for every particle of the tilt series; row order is never used.

Every row gets its own (particle, slot): a collision (two rows of one particle in one tilt
image, or two rows naming the same image) is a DataError naming the rows, never an
overwrite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from tomohet.data.sources import DataError
from tomohet.io.star import strings

__all__ = ["Layout", "detect_layout", "strip_tilt_index", "check_unique_images"]

_EXT = re.compile(r"(\.(mrcs?|tiff?|eer|st|ali|em|mrc:mrc|st:mrc))+$", re.IGNORECASE)
_INDEX = re.compile(r"^(.+?)[_\-.](\d+)$")


@dataclass
class Layout:
    """Per-row tilt series, particle and slot of a per-tilt star (see the module doc)."""

    tomo_row: np.ndarray  # (rows,) tilt-series name of each row
    names: list[str]  # particle names, unique
    pid: np.ndarray  # (rows,) particle of each row
    slot: np.ndarray  # (rows,) tilt slot of each row
    tilt_series_from: str  # how the tilt series were found (for info and the docs)
    micrograph_per_tilt: bool
    group_of_name: dict[str, str] = field(default_factory=dict)


def strip_tilt_index(name: str) -> tuple[str, int] | None:
    """``dir/TS_01_021.mrc`` -> (``dir/TS_01``, 21); None without a trailing index."""
    path = PurePosixPath(name.replace("\\", "/"))
    stem = _EXT.sub("", path.name)
    m = _INDEX.match(stem)
    if m is None:
        return None
    return str(path.parent / m.group(1)), int(m.group(2))


def _micrographs_per_tilt(mic: np.ndarray, group: np.ndarray) -> bool:
    """True when rlnMicrographName names tilt images (one row per (micrograph, group))."""
    pairs = pd.DataFrame({"m": mic, "g": group})
    per_pair = pairs.groupby(["m", "g"], sort=False).size().to_numpy()
    per_group = pairs.groupby("g", sort=False).size().to_numpy()
    return bool(per_group.max() > 1 and np.median(per_pair) <= 1)


def _series_from_micrographs(mic: np.ndarray, group: np.ndarray) -> np.ndarray | None:
    """Tilt series from per-tilt micrograph names, or None if they have no usable index."""
    parsed = {m: strip_tilt_index(m) for m in np.unique(mic)}
    if any(v is None for v in parsed.values()):
        return None
    full = {m: v[0] for m, v in parsed.items() if v is not None}
    short = {m: PurePosixPath(s).name for m, s in full.items()}
    folders: dict[str, set[str]] = {}
    for m in full:
        folders.setdefault(short[m], set()).add(full[m])
    use = short if all(len(v) == 1 for v in folders.values()) else full
    series = np.array([use[m] for m in mic], dtype=object)
    # stripping must group tilt images: fewer particles than rows
    n_particles = len(pd.DataFrame({"s": series, "g": group}).drop_duplicates())
    if n_particles == len(mic) or len(set(use.values())) == len(parsed):
        return None
    return series


def _tilt_series(df: pd.DataFrame, path: Path, block: str,
                 group: np.ndarray) -> tuple[np.ndarray, str, bool]:
    mic = (np.asarray(strings(df, "rlnMicrographName", path, block), dtype=object)
           if "rlnMicrographName" in df.columns else None)
    per_tilt = mic is not None and _micrographs_per_tilt(mic, group)
    if "rlnTomoName" in df.columns:
        return np.asarray(strings(df, "rlnTomoName", path, block), dtype=object), \
            "rlnTomoName", per_tilt
    if mic is None:
        return np.full(len(df), "tomo", dtype=object), \
            "none (no rlnTomoName or rlnMicrographName: one tilt series)", False
    if not per_tilt:
        return mic, "rlnMicrographName (one per tilt series)", False
    series = _series_from_micrographs(mic, group)
    if series is not None:
        return series, "rlnMicrographName without its per-tilt index", True
    return group.astype(object), \
        "particle group (micrograph names have no per-tilt index)", True


def _particles(tomo: np.ndarray, group: np.ndarray) -> tuple[list[str], np.ndarray,
                                                              dict[str, str]]:
    pairs = pd.DataFrame({"t": tomo, "g": group})
    shared = (pairs.drop_duplicates().groupby("g", sort=False).size() > 1).any()
    label = (pairs["t"].astype(str) + "/" + pairs["g"].astype(str)) if shared \
        else pairs["g"].astype(str)
    codes, uniques = pd.factorize(label, sort=False)
    names = [str(u) for u in uniques]
    first = pd.Series(np.arange(len(label))).groupby(codes).min().to_numpy()
    group_of = {names[k]: str(group[first[k]]) for k in range(len(names))}
    return names, np.asarray(codes, dtype=np.int64), group_of


def _slots_by_pair(pid: np.ndarray, tomo: np.ndarray, dose: np.ndarray, tilt: np.ndarray,
                   tie: np.ndarray) -> np.ndarray:
    """Slot of each row: rank of its (dose, tilt) among its tilt series' distinct pairs.

    ``tie`` (per row, e.g. the rank of the image name) orders images of one particle with
    equal (dose, tilt) in the per-particle fallback, so row order is never used.
    """
    slot = np.zeros(len(pid), dtype=np.int64)
    key_d, key_t = np.round(dose, 2), np.round(tilt, 1)
    for series in pd.unique(tomo):
        rows = np.nonzero(tomo == series)[0]
        pairs = np.stack([key_d[rows], key_t[rows]], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        order = np.lexsort((uniq[:, 1], uniq[:, 0]))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        s = rank[inv.reshape(-1)]
        if len(np.unique(pid[rows] * (len(uniq) + 1) + s)) == len(rows):
            slot[rows] = s
            continue
        for p in np.unique(pid[rows]):
            prow = rows[pid[rows] == p]
            o = np.lexsort((tie[prow], tilt[prow], dose[prow]))
            slot[prow[o]] = np.arange(len(prow))
    return slot


def _slots_by_micrograph(mic: np.ndarray, tomo: np.ndarray, dose: np.ndarray,
                         tilt: np.ndarray) -> np.ndarray:
    """Slot of each row: rank of its micrograph in its tilt series by (dose, tilt, name)."""
    frame = pd.DataFrame({"t": tomo, "m": mic, "d": dose, "a": tilt})
    per = frame.groupby(["t", "m"], sort=True).agg(d=("d", "mean"), a=("a", "mean"))
    per = per.reset_index()
    per["d"], per["a"] = per["d"].round(6), per["a"].round(6)
    per = per.sort_values(["t", "d", "a", "m"], kind="mergesort")
    per["slot"] = per.groupby("t", sort=False).cumcount()
    lookup = {(t, m): int(s) for t, m, s in zip(per["t"], per["m"], per["slot"], strict=True)}
    return np.array([lookup[(t, m)] for t, m in zip(tomo, mic, strict=True)], dtype=np.int64)


def _check_collisions(path: Path, pid: np.ndarray, slot: np.ndarray, names: list[str],
                      what: np.ndarray, why: str) -> None:
    frame = pd.DataFrame({"p": pid, "s": slot})
    dup = frame.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.nonzero(dup)[0]
        first = rows[(pid[rows] == pid[rows[0]]) & (slot[rows] == slot[rows[0]])]
        raise DataError(
            f"{path}: rows {', '.join(str(r + 1) for r in first[:4])} of the data block all "
            f"give particle {names[pid[first[0]]]!r} an image of {what[first[0]]} ({why}); "
            "one particle has one image per tilt")


def detect_layout(df: pd.DataFrame, path: Path, block: str, gcol: str, dose: np.ndarray,
                  tilt: np.ndarray, tie: np.ndarray) -> Layout:
    """Tilt series, particle and slot of every row (rules in the module docstring)."""
    group = np.asarray(strings(df, gcol, path, block), dtype=object)
    tomo, source, per_tilt = _tilt_series(df, path, block, group)
    names, pid, group_of = _particles(tomo, group)
    if per_tilt:
        mic = np.asarray(strings(df, "rlnMicrographName", path, block), dtype=object)
        slot = _slots_by_micrograph(mic, tomo, dose, tilt)
        _check_collisions(path, pid, slot, names, mic, "rlnMicrographName")
        if source.startswith("particle group"):
            key = np.array([f"dose {d:.2f}, tilt {a:.1f}" for d, a in
                            zip(np.round(dose, 2), np.round(tilt, 1), strict=True)])
            codes = pd.factorize(key)[0]
            _check_collisions(path, pid, codes, names, key,
                              "rlnMicrographName has no per-tilt index, so tilt series are "
                              "unknown; add rlnTomoName if group names repeat across them")
    else:
        slot = _slots_by_pair(pid, tomo, dose, tilt, tie)
    return Layout(tomo_row=tomo, names=names, pid=pid, slot=slot, tilt_series_from=source,
                  micrograph_per_tilt=per_tilt, group_of_name=group_of)


def check_unique_images(path: Path, file_index: np.ndarray, frame: np.ndarray,
                        names: list[str]) -> None:
    """Two rows naming the same image (stack and index) is a DataError."""
    key = pd.DataFrame({"f": file_index, "i": frame})
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.nonzero(dup)[0]
        same = rows[(file_index[rows] == file_index[rows[0]]) & (frame[rows] == frame[rows[0]])]
        raise DataError(f"{path}: rlnImageName: duplicate image {names[same[0]]!r} in rows "
                        f"{', '.join(str(r + 1) for r in same[:4])}; each row needs its own "
                        "image")

"""A subset of a particle set, written in the input's own files (``tomohet select``).

The selected rows are copied from the input file: every column, other tools' included,
keeps its values; only rows are filtered. Three things change so that the subset, in
another folder, reads back as the same particles:

* file names (``rlnImageName``, ``rlnCtfImage``; ``N@`` prefixes kept) are rewritten
  relative to the new file;
* RELION particles without ``rlnTomoParticleName`` get that column with the names the
  reader gave them (RELION 5 numbers unnamed particles per tomogram, RELION 4 names
  them by their image: both would change in a subset or another folder);
* STOPGAP and Dynamo tables do not name their volumes: the selected volumes are linked
  next to the new table under the format's own names (``subtomograms/subtomo_<n>.mrc``,
  ``particle_<tag:06d>.mrc``).

Per format: RELION 5 -> ``<stem>.star`` (all blocks, particles filtered) and
``<stem>_optimisation_set.star`` naming it and the input's tomograms star (referenced
where it is, not copied), with the input optimisation set's other entries (reference
maps, masks, trajectories) kept; Warp/tomoDRGN per-tilt star -> the star with the rows of the
selected particles' tilt images; RELION 3.1/4 -> the star; STOPGAP -> the motivelist;
Dynamo -> the ``.tbl`` (and its ``.columns.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_write_text
from tomohet.io.common import relative_name, resolve_files
from tomohet.io.relion5 import default_names
from tomohet.io.star import (
    find_block,
    loop_blocks,
    read_star,
    resolve_path,
    strings,
    write_star,
)
from tomohet.io.stopgap import BLOCK as STOPGAP_BLOCK
from tomohet.io.stopgap import link_volumes

__all__ = ["write_subset", "PATH_COLUMNS"]

PATH_COLUMNS = ("rlnImageName", "rlnCtfImage")


def _rebase(df: pd.DataFrame, star: Path, new: Path, datadir: Path | None) -> pd.DataFrame:
    """File-name columns of ``df`` (read from ``star``) made relative to ``new``."""
    out = df.copy()
    for col in PATH_COLUMNS:
        if col not in out.columns or len(out) == 0:
            continue
        values = strings(out, col, star, "particles")
        prefix = [v.rpartition("@")[0] + "@" if "@" in v else "" for v in values]
        files = [v.rpartition("@")[2] for v in values]
        found = resolve_files(files, star, col, datadir=datadir)
        out[col] = [p + relative_name(f, new) for p, f in zip(prefix, found, strict=True)]
    return out


def _target(out_dir: Path, source: Path) -> Path:
    """``out_dir / source.name``, refusing to overwrite the input itself."""
    out = out_dir / source.name
    if out.resolve() == source.resolve():
        raise DataError(f"{out}: is the input file; write the subset to another folder")
    return out


def _check_names(rows: Sequence[str], particles: TiltSeriesParticles | SubtomogramParticles,
                 path: Path) -> None:
    missing = set(particles.names) - set(rows)
    if missing:
        raise DataError(f"{path}: particle {sorted(missing)[0]!r} is not in the file any more "
                        "(the file changed since it was read?)")


def _relion(p: TiltSeriesParticles | SubtomogramParticles, keep: set[str], out_dir: Path,
            datadir: Path | None) -> list[Path]:
    ppath = Path(p.meta.get("particles_path") or p.meta["source"])
    blocks = read_star(ppath)
    two_d = isinstance(p, TiltSeriesParticles)
    name, df = find_block(blocks, ppath, ("particles",),
                          ("rlnTomoName",) if two_d else ("rlnImageName",))
    df = df.reset_index(drop=True)
    if "rlnTomoParticleName" in df.columns:
        rows = strings(df, "rlnTomoParticleName", ppath, name)
    elif two_d:
        rows = default_names(strings(df, "rlnTomoName", ppath, name))
    else:
        rows = strings(df, "rlnImageName", ppath, name)
    _check_names(rows, p, ppath)
    mask = np.array([r in keep for r in rows])
    out = _target(out_dir, ppath)
    sub = _rebase(df[mask].reset_index(drop=True), ppath, out, datadir)
    if "rlnTomoParticleName" not in sub.columns:
        sub["rlnTomoParticleName"] = [r for r, m in zip(rows, mask, strict=True) if m]
    write_star(out, {**blocks, name: sub})
    written = [out]
    tpath = p.meta.get("tomograms_path")
    if p.meta.get("format") == "relion5" and tpath:
        opt = out.with_name(out.stem + "_optimisation_set.star")
        values = _optimisation_entries(p.meta.get("optimisation_set"), opt)
        values.update(rlnTomoParticlesFile=out.name,
                      rlnTomoTomogramsFile=relative_name(tpath, opt))
        write_star(opt, {"": values})
        written.append(opt)
    return written


def _optimisation_entries(source: str | None, new: Path) -> dict[str, Any]:
    """The other entries of the input's optimisation set (reference maps, masks,
    trajectories...), files among them named relative to ``new``."""
    if not source:
        return {}
    src = Path(source)
    blocks = read_star(src)
    values: dict[str, Any] = {}
    for block in blocks.values():
        row = block if isinstance(block, dict) else (block.iloc[0].to_dict() if len(block)
                                                     else {})
        if "rlnTomoParticlesFile" in row:
            values = dict(row)
            break
    for key, value in values.items():
        path = resolve_path(str(value), src)
        if isinstance(value, str) and value.strip() and path.is_file():
            values[key] = relative_name(path, new)
    return values


def _warp(p: TiltSeriesParticles, keep: set[str], out_dir: Path,
          datadir: Path | None) -> list[Path]:
    path = Path(p.meta["source"])
    blocks = read_star(path)
    raw = p.meta["warp_rows"]
    same = [k for k, df in loop_blocks(blocks).items()
            if list(df.columns) == list(raw.columns) and len(df) == len(raw)]
    if len(same) != 1:
        raise DataError(f"{path}: cannot find the per-tilt block read earlier (file changed?)")
    owner = list(p.meta["warp_row_particle"])
    _check_names(owner, p, path)
    mask = np.array([o in keep for o in owner])
    out = _target(out_dir, path)
    df = loop_blocks(blocks)[same[0]].reset_index(drop=True)
    write_star(out, {**blocks, same[0]: _rebase(df[mask].reset_index(drop=True), path, out,
                                                datadir)})
    return [out]


def _stopgap(p: SubtomogramParticles, keep: set[str], out_dir: Path) -> list[Path]:
    path = Path(p.meta["source"])
    blocks = read_star(path)
    name, df = find_block(blocks, path, (STOPGAP_BLOCK,), ("motl_idx", "tomo_num", "orig_x"))
    df = df.reset_index(drop=True)
    rows = [str(int(float(v))) for v in df["subtomo_num"]]
    _check_names(rows, p, path)
    mask = np.array([r in keep for r in rows])
    out = _target(out_dir, path)
    sel = [i for i, n in enumerate(p.names) if n in keep]
    written = link_volumes([p.volumes.files[i] for i in sel],
                           [out_dir / "subtomograms" / f"subtomo_{p.names[i]}.mrc" for i in sel])
    write_star(out, {**blocks, name: df[mask].reset_index(drop=True)})
    return [*written, out]


def _dynamo(p: SubtomogramParticles, keep: set[str], out_dir: Path) -> list[Path]:
    path = Path(p.meta["source"])
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    data = [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if len(data) != p.n_particles:
        raise DataError(f"{path}: {len(data)} rows, {p.n_particles} particles read earlier "
                        "(the file changed since it was read?)")
    tags = [str(int(float(lines[i].split()[0]))) for i in data]
    _check_names(tags, p, path)
    chosen = {i for i, t in zip(data, tags, strict=True) if t in keep}
    text = [ln for i, ln in enumerate(lines) if i not in data or i in chosen]
    out = _target(out_dir, path)
    sel = [i for i, n in enumerate(p.names) if n in keep]
    written = link_volumes([p.volumes.files[i] for i in sel],
                           [out_dir / f"particle_{int(p.names[i]):06d}.mrc" for i in sel])
    side = path.with_name(path.name + ".columns.json")
    if side.exists():
        written.append(atomic_write_text(out.with_name(out.name + ".columns.json"),
                                         side.read_text()))
    atomic_write_text(out, "\n".join(text) + "\n")
    return [*written, out]


def write_subset(particles: TiltSeriesParticles | SubtomogramParticles,
                 names: Sequence[str], out_dir: str | Path,
                 datadir: str | Path | None = None) -> list[Path]:
    """Write the particles ``names`` of ``particles`` (as read by
    :func:`tomohet.io.read_particles`) into ``out_dir`` in the input's format; returns the
    written paths (see the module docstring). ``datadir``: as given to the reader.

    Raises:
        DataError: empty selection, a name that is not in the set, an in-memory set, or a
            file that changed since it was read.
    """
    p = particles
    keep = set(names)
    if not keep:
        raise DataError(f"{p.meta.get('source', '<memory>')}: the selection is empty")
    unknown = sorted(keep - set(p.names))
    if unknown:
        raise DataError(f"{p.meta.get('source', '<memory>')}: particle {unknown[0]!r} is not "
                        "in the particle set")
    fmt = p.meta.get("format")
    if "source" not in p.meta:
        raise DataError("an in-memory particle set has no input file to select rows from; "
                        "write it with write_particles")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = None if datadir is None else Path(datadir)
    if fmt in ("relion5", "relion4"):
        return _relion(p, keep, out, folder)
    if fmt == "warp" and isinstance(p, TiltSeriesParticles):
        return _warp(p, keep, out, folder)
    if fmt == "stopgap" and isinstance(p, SubtomogramParticles):
        return _stopgap(p, keep, out)
    if fmt == "dynamo" and isinstance(p, SubtomogramParticles):
        return _dynamo(p, keep, out)
    raise DataError(f"{p.meta['source']}: no subset writer for format {fmt!r}")

"""STOPGAP motivelist star (``data_stopgap_motivelist``).

Fields (STOPGAP ``sg_get_motl_fields``): motl_idx, tomo_num, object, subtomo_num,
halfset ('A'/'B'), orig_x/y/z (tomogram voxels), score, x/y/z_shift (voxels, tomogram
frame), phi, psi, the (degrees, AV3/TOM ZXZ convention; see
:mod:`tomohet.io.conventions`), class.

Reading: position = (orig + shift) * voxel size, relative to the tomogram corner (the
motivelist has no tomogram size); rotation = ``Rz(psi) @ Rx(the) @ Rz(phi)``; names are
the ``subtomo_num`` values, tomogram names the ``tomo_num`` values. Volumes are found as
described in :mod:`tomohet.io.subtomo` (``subtomo_<subtomo_num>.mrc``).

Writing keeps the table's shifts (orig = position - shift), takes the class from an
``rlnClassNumber`` extra column when given, and links the volumes as
``subtomograms/subtomo_<subtomo_num>.mrc`` next to the motivelist so that the output is
readable again (in-memory volumes are written there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.particles import SubtomogramParticles
from tomohet.data.sources import DataError, VolumeSource
from tomohet.io.common import Overrides, first_rows, merge_extra, tomogram_centres_A
from tomohet.io.conventions import matrix_to_stopgap, stopgap_to_matrix
from tomohet.io.star import find_block, numeric, read_star, require_columns, strings, write_star
from tomohet.io.subtomo import (
    VolumeSpec,
    check_volumes,
    find_volumes,
    numbers_from,
    volume_files_for_writing,
    volume_optics,
)
from tomohet.io.validate import check_finite, int_column

__all__ = ["read_stopgap", "write_stopgap", "FIELDS", "link_volumes"]

FIELDS = ("motl_idx", "tomo_num", "object", "subtomo_num", "halfset", "orig_x", "orig_y",
          "orig_z", "score", "x_shift", "y_shift", "z_shift", "phi", "psi", "the", "class")
REQUIRED = ("tomo_num", "subtomo_num", "orig_x", "orig_y", "orig_z", "phi", "psi", "the")
DEFAULTS = ("subtomo_{id}.mrc", "subtomograms/subtomo_{id}.mrc",
            "../subtomograms/subtomo_{id}.mrc")
BLOCK = "stopgap_motivelist"


def read_stopgap(path: str | Path, volumes: VolumeSpec = None,
                 overrides: Overrides | None = None) -> SubtomogramParticles:
    """Read a STOPGAP motivelist star -> SubtomogramParticles."""
    p = Path(path)
    blocks = read_star(p)
    block, df = find_block(blocks, p, (BLOCK,), ("motl_idx", "tomo_num", "orig_x"))
    df = df.reset_index(drop=True)
    require_columns(df, REQUIRED, p, block)
    if len(df) == 0:
        raise DataError(f"{p}: the motivelist has no entries")
    for col in FIELDS:
        if col in df.columns and col != "halfset":
            numeric(df, col, p, block)
    for col in ("motl_idx", "tomo_num", "object", "class"):
        if col in df.columns:
            int_column(numeric(df, col, p, block), p, col, block)
    if "halfset" in df.columns:
        bad = [i for i, h in enumerate(strings(df, "halfset", p, block))
               if h.strip().upper() not in ("A", "B")]
        if bad:
            raise DataError(f"{p}: block data_{block}, column halfset: "
                            f"{df['halfset'].iloc[bad[0]]!r} in row {bad[0] + 1} is not A or B")
    nums = numbers_from(numeric(df, "subtomo_num", p, block), "subtomo_num", p, block)
    files = find_volumes(volumes, nums, p, DEFAULTS)
    ov = overrides or Overrides()
    optics = volume_optics(files[0], ov, p)
    check_volumes(files, (optics.box,) * 3, p, "volume of subtomo_num",
                  None if ov.pixel_size_A is not None else optics.pixel_size_A)
    pix = optics.pixel_size_A
    with np.errstate(over="ignore", invalid="ignore"):
        pos = np.stack([numeric(df, f"orig_{a}", p, block)
                        + numeric(df, f"{a}_shift", p, block, default=0.0) for a in "xyz"], -1)
        pos_A = pos * pix
    for k, a in enumerate("xyz"):
        check_finite(pos_A[:, k], p, f"orig_{a} + {a}_shift", block)
    rot = stopgap_to_matrix(*[numeric(df, c, p, block) for c in ("phi", "psi", "the")])
    tomo = [str(v) for v in int_column(numeric(df, "tomo_num", p, block), p, "tomo_num", block)]
    b = optics.box
    meta = {"rows_in_file": len(df), "images_read": len(df), "dropped": {},
            "rows_are": "images", "format": "stopgap", "source": str(p),
            "tomogram_centres_A": {}, "coordinate_pixel_size_A": pix}
    return SubtomogramParticles(
        names=[str(k) for k in nums], tomo_names=tomo, position_A=pos_A, rotation=rot,
        volumes=VolumeSource(files, (b, b, b)), weights=None, optics=optics,
        weight_layout="none", table=df, meta=meta,
    )


def link_volumes(files: list[str], targets: list[Path]) -> list[Path]:
    """Make ``targets`` point at ``files`` (relative symlinks; a copy where links fail)."""
    out = []
    for src, dst in zip(files, targets, strict=True):
        src_p = Path(src).resolve()
        if dst.exists() and dst.resolve() == src_p:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        try:
            os.symlink(os.path.relpath(src_p, dst.parent.resolve()), dst)
        except OSError:
            import shutil

            shutil.copyfile(src_p, dst)
        out.append(dst)
    return out


def _tomo_numbers(p: SubtomogramParticles, df: pd.DataFrame, col: str) -> np.ndarray:
    if col in df.columns:
        return pd.to_numeric(df[col], errors="coerce").fillna(0).to_numpy().astype(int)
    names = p.tomo_names
    if all(n.strip().lstrip("-").isdigit() for n in names):
        return np.array([int(n) for n in names])
    return pd.factorize(pd.Series(names))[0] + 1


def _particle_numbers(p: SubtomogramParticles, df: pd.DataFrame, col: str) -> np.ndarray:
    if col in df.columns:
        return pd.to_numeric(df[col], errors="coerce").fillna(0).to_numpy().astype(int)
    names = p.names
    if all(n.strip().isdigit() for n in names) and len(set(names)) == len(names):
        return np.array([int(n) for n in names])
    return np.arange(1, len(names) + 1)


def _classes(df: pd.DataFrame, extra: pd.DataFrame | None, col: str, n: int) -> np.ndarray:
    for source in (extra, df):
        if source is not None and "rlnClassNumber" in source.columns:
            return pd.to_numeric(source["rlnClassNumber"]).to_numpy().astype(int)
    if col in df.columns:
        return pd.to_numeric(df[col]).to_numpy().astype(int)
    return np.ones(n, dtype=int)


def write_stopgap(particles: SubtomogramParticles, path: str | Path,
                  extra_columns: pd.DataFrame | None = None) -> list[Path]:
    """Write a STOPGAP motivelist star (+ volume links); returns the written paths."""
    p = particles
    out = Path(path)
    if not isinstance(p, SubtomogramParticles):
        raise DataError(f"{out}: a STOPGAP motivelist needs 3D subtomogram particles")
    n = p.n_particles
    df = first_rows(p.table, n)
    pix = p.optics.pixel_size_A
    pos = (p.position_A + tomogram_centres_A(p)) / pix
    shift = np.stack([numeric(df, f"{a}_shift", out, BLOCK, default=0.0) for a in "xyz"], -1)
    ang = matrix_to_stopgap(p.rotation)
    nums = _particle_numbers(p, df, "subtomo_num")
    if "halfset" in df.columns:
        half = strings(df, "halfset", out, BLOCK)
    elif "rlnRandomSubset" in df.columns:
        half = ["B" if int(v) == 2 else "A" for v in pd.to_numeric(df["rlnRandomSubset"])]
    else:
        half = ["A"] * n
    motl = pd.DataFrame({
        "motl_idx": np.arange(1, n + 1), "tomo_num": _tomo_numbers(p, df, "tomo_num"),
        "object": _particle_numbers(p, df, "object") if "object" in df.columns else 1,
        "subtomo_num": nums, "halfset": half,
        "orig_x": pos[:, 0] - shift[:, 0], "orig_y": pos[:, 1] - shift[:, 1],
        "orig_z": pos[:, 2] - shift[:, 2],
        "score": numeric(df, "score", out, BLOCK, default=0.0),
        "x_shift": shift[:, 0], "y_shift": shift[:, 1], "z_shift": shift[:, 2],
        "phi": ang[:, 0], "psi": ang[:, 1], "the": ang[:, 2],
        "class": _classes(df, extra_columns, "class", n),
    })
    others = [c for c in df.columns if c not in FIELDS and not str(c).startswith("rln")]
    for c in others:
        motl[c] = df[c].to_numpy()
    motl = merge_extra(motl, extra_columns, n, out)
    vols, _, written = volume_files_for_writing(p, out)
    targets = [out.parent / "subtomograms" / f"subtomo_{k}.mrc" for k in nums]
    written += link_volumes(vols, targets)
    write_star(out, {BLOCK: motl})
    return [*written, out]

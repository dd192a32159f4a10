"""Generic STAR helpers on top of the ``starfile`` package.

Every reader goes through :func:`read_star`, which turns parser failures, empty files
and truncated lines (a cut line leaves empty cells) into :class:`DataError` messages
that name the file, the block and the column. Column accessors (:func:`numeric`,
:func:`strings`, :func:`vectors`) add the same context to bad values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import starfile

from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_path

__all__ = [
    "read_star", "write_star", "loop_blocks", "find_block", "require_columns", "numeric",
    "strings", "vectors", "format_vector", "key_values", "resolve_path", "check_path",
]

FLOAT_FORMAT = "%.10g"
Block: TypeAlias = pd.DataFrame | dict[str, Any]


def _check_cells(df: pd.DataFrame, path: Path, name: str) -> None:
    for col in df.columns:
        values = df[col]
        missing = np.array(values.isna().to_numpy(), dtype=bool)
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            missing = missing | values.astype(str).str.strip().eq("").to_numpy(dtype=bool)
        if missing.any():
            row = int(np.nonzero(missing)[0][0]) + 1
            raise DataError(
                f"{path}: block data_{name}, column {col}: NaN or missing value in row "
                f"{row} (NaN in the file, or a truncated or malformed line?)"
            )


_BLOCK_RE = re.compile(rb"^[ \t]*data_(\S*)", re.MULTILINE)


def check_path(p: Path, what: str = "file") -> None:
    """DataError for a missing path, a folder or an empty file."""
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a folder (directory), not a {what}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file")


def _duplicate_blocks(p: Path) -> None:
    """starfile keeps the last of two same-named blocks: refuse such files instead."""
    with open(p, "rb") as fh:
        names = [m.group(1).decode(errors="replace") for m in _BLOCK_RE.finditer(fh.read())]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{p}: two data blocks named data_{name}; which one is meant is "
                            "ambiguous (remove or rename the stale one)")
        seen.add(name)


def read_star(path: str | os.PathLike[str]) -> dict[str, Block]:
    """All blocks of a STAR file: loop blocks as DataFrames, simple blocks as dicts.

    Raises DataError for a missing, empty, unparsable or truncated file, and for two
    blocks with the same name (the parser would silently keep only the last).
    """
    p = Path(path)
    check_path(p, "STAR file")
    _duplicate_blocks(p)
    try:
        blocks = starfile.read(p, always_dict=True)
    except Exception as exc:  # the parser raises many kinds
        raise DataError(f"{p}: cannot parse STAR file ({type(exc).__name__}: {exc})") from exc
    if not blocks:
        raise DataError(f"{p}: no data blocks found (empty or not a STAR file)")
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            _check_cells(block, p, name)
        elif isinstance(block, dict):
            for key, value in block.items():
                if value is None or (isinstance(value, float) and np.isnan(value)) or \
                        str(value).strip() == "":
                    raise DataError(f"{p}: block data_{name}: no value for {key}")
    return dict(blocks)


def loop_blocks(blocks: dict[str, Block]) -> dict[str, pd.DataFrame]:
    """Only the loop (table) blocks."""
    return {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}


def find_block(
    blocks: dict[str, Block], path: Path, names: Sequence[str] = ("particles",),
    columns: Sequence[str] = (),
) -> tuple[str, pd.DataFrame]:
    """The loop block named one of ``names``, else the only one with all of ``columns``.

    Raises DataError naming the file and the wanted block when there is none, and naming
    the blocks when two blocks hold ``columns`` (a stale copy next to the right one).
    """
    loops = loop_blocks(blocks)
    candidates = [n for n, df in loops.items() if columns and all(c in df.columns
                                                                   for c in columns)]
    named = [n for n in names if n in loops]
    chosen = named[0] if named else (candidates[0] if candidates else None)
    others = [n for n in candidates if n != chosen]
    if chosen is not None and others:
        listed = ", ".join(f"data_{n}" for n in [chosen, *others])
        raise DataError(f"{path}: blocks {listed} all hold the columns "
                        f"{', '.join(columns)}; which one to read is ambiguous (remove the "
                        "stale block)")
    if chosen is not None:
        return chosen, loops[chosen]
    want = " or ".join(f"data_{n}" for n in names)
    cols = f" with columns {', '.join(columns)}" if columns else ""
    raise DataError(f"{path}: no {want} block{cols} found")


def key_values(blocks: dict[str, Block], name: str) -> dict[str, Any]:
    """A simple (non-loop) block as a dict; a one-row loop block is accepted too."""
    block = blocks.get(name)
    if block is None:
        return {}
    if isinstance(block, pd.DataFrame):
        return block.iloc[0].to_dict() if len(block) else {}
    return dict(block)


def require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path, block: str) -> None:
    """DataError naming the file, block and the first missing column."""
    for col in columns:
        if col not in df.columns:
            raise DataError(f"{path}: block data_{block} has no column {col}")


def numeric(
    df: pd.DataFrame, col: str, path: Path, block: str, default: float | None = None,
) -> np.ndarray:
    """Column ``col`` as float64 (len(df),); ``default`` fills a missing column.

    Raises DataError for a missing column without default, or a non-numeric/NaN cell.
    """
    if col not in df.columns:
        if default is None:
            raise DataError(f"{path}: block data_{block} has no column {col}")
        return np.full(len(df), float(default))
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.nonzero(bad)[0][0])
        raise DataError(
            f"{path}: block data_{block}, column {col}: value {df[col].iloc[row]!r} in row "
            f"{row + 1} is not a finite number"
        )
    return values


def strings(df: pd.DataFrame, col: str, path: Path, block: str,
            default: str | None = None) -> list[str]:
    """Column ``col`` as a list of str; ``default`` fills a missing column."""
    if col not in df.columns:
        if default is None:
            raise DataError(f"{path}: block data_{block} has no column {col}")
        return [default] * len(df)
    return [str(v) for v in df[col].tolist()]


def vectors(df: pd.DataFrame, col: str, path: Path, block: str) -> list[np.ndarray]:
    """Vector cells like ``[0,1,1]`` or ``[0.1,-0.9,0.02,0]`` as float arrays."""
    out = []
    for row, text in enumerate(strings(df, col, path, block)):
        t = text.strip()
        if not (t.startswith("[") and t.endswith("]")):
            raise DataError(
                f"{path}: block data_{block}, column {col}: row {row + 1} is not a vector "
                f"like [a,b,...] ({t[:40]!r})"
            )
        inner = t[1:-1].strip()
        try:
            values = np.array([float(x) for x in inner.split(",")] if inner else [],
                              dtype=np.float64)
        except ValueError as exc:
            raise DataError(
                f"{path}: block data_{block}, column {col}: row {row + 1}: bad vector {t[:40]!r}"
            ) from exc
        if not np.isfinite(values).all():
            raise DataError(f"{path}: block data_{block}, column {col}: NaN in row {row + 1}")
        out.append(values)
    return out


def format_vector(values: Sequence[float] | np.ndarray, integer: bool = False) -> str:
    """``[a,b,c]`` without spaces (RELION vector cells)."""
    v = np.asarray(values).reshape(-1)
    if integer:
        return "[" + ",".join(str(int(x)) for x in v) + "]"
    return "[" + ",".join(format(float(x), ".9g") for x in v) + "]"


def write_star(path: str | os.PathLike[str], blocks: dict[str, Block]) -> Path:
    """Write blocks (DataFrames or dicts) to ``path`` atomically; returns the path."""
    p = Path(path)
    clean: dict[str, Block] = {}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            clean[name] = block.reset_index(drop=True)
        else:
            clean[name] = dict(block)
    with atomic_path(p) as tmp:
        starfile.write(clean, tmp, float_format=FLOAT_FORMAT, sep="\t")
        _drop_timestamp(Path(tmp))
    return p


def _drop_timestamp(path: Path) -> None:
    """Replace starfile's "# Created by ... at HH:MM:SS on DD/MM/YYYY" header with a fixed
    one, so that the same data give the same bytes (reproducible outputs)."""
    text = path.read_text()
    first, sep, rest = text.partition("\n")
    if first.startswith("# Created by the starfile"):
        path.write_text("# written by tomohet" + sep + rest)


def resolve_path(name: str, star_path: Path, bases: Sequence[Path] = ()) -> Path:
    """A file named in ``star_path``: absolute, or relative to its folder or the cwd.

    Returns the first existing candidate, else the candidate next to the star file.
    """
    p = Path(name)
    if p.is_absolute():
        return p
    candidates = [b / p for b in bases] + [star_path.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c
    return star_path.parent / p

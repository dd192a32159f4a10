"""Building blocks of the fuzz corpus: STAR/MRC files as plain Python structures
(:class:`Star`, :class:`Mrc`), the :class:`Case` record and the mutations that break
exactly one thing in a copy of a valid data set."""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------- files


@dataclass
class Loop:
    columns: list[str]
    rows: list[list[str]]

    def col(self, name: str) -> int:
        return self.columns.index(name)

    def set(self, name: str, row: int, value: str) -> None:
        self.rows[row][self.col(name)] = value

    def get(self, name: str, row: int) -> str:
        return self.rows[row][self.col(name)]

    def get_col(self, name: str) -> list[str]:
        return [r[self.col(name)] for r in self.rows]

    def drop(self, name: str) -> None:
        k = self.col(name)
        self.columns.pop(k)
        for r in self.rows:
            r.pop(k)

    def add(self, name: str, values: list[str]) -> None:
        self.columns.append(name)
        for r, v in zip(self.rows, values, strict=True):
            r.append(v)


@dataclass
class Star:
    """Ordered blocks (duplicate names allowed): (name, Loop or {key: value})."""

    blocks: list[tuple[str, Loop | dict[str, str]]]
    crlf: bool = False
    cut: float | None = None  # truncate inside the last data line

    def block(self, name: str) -> Loop | dict[str, str]:
        return next(b for n, b in self.blocks if n == name)

    def loop(self, name: str) -> Loop:
        b = self.block(name)
        assert isinstance(b, Loop)
        return b

    def render(self) -> bytes:
        out = []
        for name, b in self.blocks:
            out += ["", f"data_{name}", ""]
            if isinstance(b, Loop):
                out.append("loop_")
                out += [f"_{c} #{i + 1}" for i, c in enumerate(b.columns)]
                out += ["  ".join(r) for r in b.rows]
            else:
                out += [f"_{k}  {v}" for k, v in b.items()]
            out.append("")
        text = "\n".join(out) + "\n"
        if self.cut is not None:
            lines = text.rstrip("\n").split("\n")
            last = lines[-1] if lines[-1].strip() else lines[-2]
            tokens = last.split()
            keep = "  ".join(tokens[: max(1, int(len(tokens) * self.cut))]) + "  "
            text = text[: text.rindex(last)] + keep
        if self.crlf:
            text = text.replace("\n", "\r\n")
        return text.encode()


@dataclass
class Mrc:
    """An MRC file; the header fields can lie about the data."""

    data: np.ndarray  # (z, y, x) float32
    voxel: float = 4.0
    stack: bool = True
    mode: int = 2
    header_shape: tuple[int, int, int] | None = None  # (z, y, x) written in the header
    cut_bytes: int = 0  # bytes removed from the end
    raw: bytes | None = None  # replaces everything

    def render(self) -> bytes:
        if self.raw is not None:
            return self.raw
        nz, ny, nx = self.header_shape or self.data.shape
        head = np.zeros(256, dtype="<i4")
        head[0:4] = (nx, ny, nz, self.mode)
        head[7:10] = (nx, ny, 1 if self.stack else nz)
        head[16:19] = (1, 2, 3)
        head[22] = 0 if self.stack else 1
        fl = head.view("<f4")
        fl[10:13] = (nx * self.voxel, ny * self.voxel,
                     (1 if self.stack else nz) * self.voxel)
        fl[13:16] = 90.0
        raw = bytearray(head.tobytes())
        raw[208:212] = b"MAP "
        raw[212:216] = bytes([0x44, 0x44, 0, 0])
        raw[108:112] = struct.pack("<i", 20140)
        body = np.ascontiguousarray(self.data, dtype="<f4").tobytes()
        if self.mode == 4:  # complex64: real and imaginary parts
            body = np.ascontiguousarray(self.data, dtype="<c8").tobytes()
        out = bytes(raw) + body
        return out[: len(out) - self.cut_bytes] if self.cut_bytes else out


Files = dict[str, "Star | Mrc | bytes | None"]  # None: a folder


def materialise(files: Files, folder: Path) -> None:
    for rel, content in files.items():
        p = folder / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.render())


def _f(x: float) -> str:
    return format(float(x), ".6g")


def _vec(v: np.ndarray | list[float], integer: bool = False) -> str:
    return "[" + ",".join(str(int(x)) if integer else _f(x) for x in v) + "]"


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


BOX = 8
RNG_SEED = 7


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, BOX, BOX)).astype(np.float32)


@dataclass
class Case:
    name: str
    fmt: str
    files: Files
    entry: str
    expect: str  # "ok", "error" or "either"
    truth: tuple[int, int] | None = None
    file: str = ""  # basename the error message must name
    fields: tuple[str, ...] = ()  # one of these must be in the message
    warns: str = ""  # an expected warning (substring)
    deep: bool = False  # only found when the pixel data are read (not by ``info``)

    def build(self, folder: Path) -> Path:
        materialise(self.files, folder)
        return folder / self.entry


Mutation = Callable[[Files], object]


def _mutated(base: Files, mutate: Mutation) -> Files:
    files = copy.deepcopy(base)
    mutate(files)
    return files


def _star(files: Files, rel: str) -> Star:
    s = files[rel]
    assert isinstance(s, Star)
    return s


def _mrc(files: Files, rel: str) -> Mrc:
    m = files[rel]
    assert isinstance(m, Mrc)
    return m


def set_cell(rel: str, block: str, col: str, row: int, value: str) -> Mutation:
    return lambda f: _star(f, rel).loop(block).set(col, row, value)


def set_key(rel: str, block: str, key: str, value: str | None) -> Mutation:
    def m(f: Files) -> None:
        b = _star(f, rel).block(block)
        assert isinstance(b, dict)
        if value is None:
            b.pop(key)
        else:
            b[key] = value
    return m


def drop_col(rel: str, block: str, col: str) -> Mutation:
    return lambda f: _star(f, rel).loop(block).drop(col)


def dup_row(rel: str, block: str, row: int) -> Mutation:
    def m(f: Files) -> None:
        loop = _star(f, rel).loop(block)
        loop.rows.insert(row + 1, list(loop.rows[row]))
    return m


def del_row(rel: str, block: str, row: int) -> Mutation:
    return lambda f: _star(f, rel).loop(block).rows.pop(row)


def dup_block(rel: str, block: str, rename: str | None = None, first: bool = False,
              rows: int | None = None) -> Mutation:
    """Add a copy of ``block`` (named ``rename``), after it or before it; ``rows``
    keeps only that many rows in the copy."""
    def m(f: Files) -> None:
        star = _star(f, rel)
        i = next(k for k, (n, _) in enumerate(star.blocks) if n == block)
        b = copy.deepcopy(star.blocks[i][1])
        if rows is not None and isinstance(b, Loop):
            b.rows = b.rows[:rows]
        star.blocks.insert(i if first else i + 1, (rename or block, b))
    return m


def crlf_all(f: Files) -> None:
    for v in f.values():
        if isinstance(v, Star):
            v.crlf = True


def cut_star(rel: str, frac: float = 0.5) -> Mutation:
    def m(f: Files) -> None:
        _star(f, rel).cut = frac
    return m


def garbage_line(rel: str, block: str) -> Mutation:
    def m(f: Files) -> None:
        loop = _star(f, rel).loop(block)
        loop.rows.insert(1, ["\u00ff\u00fe#garbage"])
    return m


def raw(rel: str, content: bytes | None) -> Mutation:
    def m(f: Files) -> None:
        f[rel] = content
    return m


def remove(rel: str) -> Mutation:
    def m(f: Files) -> None:
        f.pop(rel)
    return m


def mrc_edit(rel: str, **changes: object) -> Mutation:
    def m(f: Files) -> None:
        mrc = _mrc(f, rel)
        for k, v in changes.items():
            setattr(mrc, k, v)
    return m


def mrc_frames(rel: str, count: int) -> Mutation:
    def m(f: Files) -> None:
        mrc = _mrc(f, rel)
        d = mrc.data
        if count <= len(d):
            mrc.data = d[:count]
        else:
            mrc.data = np.concatenate([d, d[: count - len(d)]])
    return m


def mrc_nan(rel: str) -> Mutation:
    def m(f: Files) -> None:
        mrc = _mrc(f, rel)
        mrc.data = mrc.data.copy()
        mrc.data.flat[3] = np.nan
    return m


def both(*ms: Mutation) -> Mutation:
    def m(f: Files) -> None:
        for x in ms:
            x(f)
    return m


GARBAGE = bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8))


def stack_cases(fmt: str, base: Files, entry: str, star: str, stack: str,
                 frames: int) -> list[tuple[str, Mutation, str, tuple[str, ...]]]:
    """Broken image files (in the middle of the set): (name, mutation, file, fields)."""
    s = Path(stack).name
    return [
        ("stack missing", remove(stack), star, (s,)),
        ("stack truncated", mrc_edit(stack, cut_bytes=100), s, ("truncated", "size")),
        ("stack garbage", raw(stack, GARBAGE), s, ("MRC",)),
        ("stack tiny", raw(stack, b"MRC"), s, ("MRC",)),
        ("stack is a folder", raw(stack, None), s, ("MRC", "folder", "directory")),
        ("stack wrong box", lambda f: setattr(_mrc(f, stack), "data", np.zeros(
            (frames, BOX + 2, BOX + 2), np.float32)), s, ("box", "px", "size")),
        ("stack mode 0 lies", mrc_edit(stack, mode=0), s, ("mode", "size")),
        ("stack complex mode 4", mrc_edit(stack, mode=4), s, ("mode", "complex")),
        ("stack header shape lies", mrc_edit(stack, header_shape=(frames, BOX, BOX + 1)), s,
         ("size", "truncated", "box", "px")),
        ("stack NaN pixel", mrc_nan(stack), s, ("NaN",)),
    ]

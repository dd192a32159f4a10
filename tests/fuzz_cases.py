"""Fuzz corpus: malformed variants of every particle-file format, with the truth.

Each :class:`Case` writes a small data set (box 8, a few particles) into a folder and
says what a reader must do with it:

* ``expect == "ok"``: read correctly; ``truth`` = (particles, images or subtomograms);
* ``expect == "error"``: a DataError whose message names ``file`` and one of ``fields``;
* ``expect == "either"``: one of the two.

Files are built from plain Python structures (:class:`Star`, :class:`Mrc`) so that each
case can break exactly one thing: truncations, garbage, wrong types, NaN/inf, missing
columns, missing or short stacks, MRC headers that lie, wrong boxes, 0-based indices,
bad visible-frame strings, ambiguous or duplicate blocks, duplicates, impossible values
and CRLF line endings. ``cases()`` lists them all.
"""

from __future__ import annotations

import copy
import json
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


# ---------------------------------------------------------------------------- RELION 5
R5_TILTS = {"TS_1": [0.0, 15.0, -15.0, 30.0, -30.0], "TS_2": [0.0, 20.0, -20.0, 40.0]}
R5_VISIBLE = {"TS_1": ["[1,1,1,1,1]", "[1,0,1,1,1]", "[1,1,1,1,0]"],
              "TS_2": ["[1,1,1,1]", "[0,1,1,1]", "[1,1,1,1]"]}
TOMO_SIZE = (200, 180, 60)
IMG_SIZE = (190, 170)


def r5_tilt_loop(name: str, angles: bool = False) -> Loop:
    tilts = R5_TILTS[name]
    cols = ["rlnMicrographName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
            "rlnCtfScalefactor", "rlnMicrographPreExposure"]
    cols += ["rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst",
             "rlnTomoYShiftAngst"] if angles else [f"rlnTomoProj{a}" for a in "XYZW"]
    rows = []
    for k, t in enumerate(tilts):
        row = [f"{name}_{k + 1:03d}.mrc", _f(20000 + 100 * k), _f(19800 + 100 * k), "45",
               _f(np.cos(np.deg2rad(t))), _f(3.0 * k)]
        if angles:
            row += ["0", _f(t), "85", _f(4.0 * k - 6), _f(2.0 - k)]
        else:
            p = np.eye(4)
            p[:3, :3] = _ry(t)
            p[:3, 3] = [IMG_SIZE[0] // 2 + k, IMG_SIZE[1] // 2 - k, 0.0]
            p[:3, 3] -= _ry(t) @ (np.array(TOMO_SIZE) // 2)
            row += [_vec(p[i]) for i in range(4)]
        rows.append(row)
    return Loop(cols, rows)


def r5_global(frame_count: bool = True, ts_files: bool = False) -> Loop:
    cols = ["rlnTomoName", "rlnTomoTiltSeriesName", "rlnTomoSizeX", "rlnTomoSizeY",
            "rlnTomoSizeZ", "rlnTomoHand", "rlnTomoTiltSeriesPixelSize", "rlnVoltage",
            "rlnSphericalAberration", "rlnAmplitudeContrast"]
    if frame_count:
        cols.append("rlnTomoFrameCount")
    if ts_files:
        cols.append("rlnTomoTiltSeriesStarFile")
    rows = []
    for name, tilts in R5_TILTS.items():
        row = [name, f"{name}.mrc", *[str(s) for s in TOMO_SIZE], "-1", "2.0", "300", "2.7",
               "0.07"]
        if frame_count:
            row.append(str(len(tilts)))
        if ts_files:
            row.append(f"tilt_series/{name}.star")
        rows.append(row)
    return Loop(cols, rows)


def r5_files(angles: bool = False, ts_files: bool = False, frame_count: bool = True,
             visible: bool = True, pixel_coords: bool = False) -> Files:
    rng = np.random.default_rng(RNG_SEED)
    files: Files = {}
    tomo_blocks: list[tuple[str, Loop | dict[str, str]]] = [
        ("global", r5_global(frame_count, ts_files))]
    for name in R5_TILTS:
        loop = r5_tilt_loop(name, angles)
        if ts_files:
            files[f"tilt_series/{name}.star"] = Star([(name, loop)])
        else:
            tomo_blocks.append((name, loop))
    files["tomograms.star"] = Star(tomo_blocks)
    cols = ["rlnTomoName", "rlnTomoParticleName", "rlnImageName", "rlnAngleRot",
            "rlnAngleTilt", "rlnAnglePsi", "rlnOpticsGroup"]
    cols += [f"rlnCoordinate{a}" for a in "XYZ"] if pixel_coords else \
        [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    if visible:
        cols.append("rlnTomoVisibleFrames")
    rows = []
    for name, vis in R5_VISIBLE.items():
        for i, v in enumerate(vis):
            stack = f"stacks/{name}_{i + 1:03d}.mrcs"
            files[stack] = Mrc(_images(rng, len(R5_TILTS[name])))
            pos = rng.uniform(-100, 100, 3)
            if pixel_coords:
                pos = pos / 2.0 + np.array(TOMO_SIZE) / 2.0
            row = [name, f"{name}/{i + 1}", stack, _f(10 * i), _f(20 + i), _f(-30 * i), "1",
                   *[_f(x) for x in pos]]
            if visible:
                row.append(v)
            rows.append(row)
    optics = Loop(["rlnOpticsGroup", "rlnOpticsGroupName", "rlnSphericalAberration",
                   "rlnVoltage", "rlnTomoTiltSeriesPixelSize", "rlnCtfDataAreCtfPremultiplied",
                   "rlnImageDimensionality", "rlnTomoSubtomogramBinning", "rlnImagePixelSize",
                   "rlnImageSize", "rlnAmplitudeContrast"],
                  [["1", "opticsGroup1", "2.7", "300", "2.0", "1", "2", "2.0", "4.0",
                    str(BOX), "0.07"]])
    files["particles.star"] = Star([("general", {"rlnTomoSubTomosAre2DStacks": "1"}),
                                    ("optics", optics), ("particles", Loop(cols, rows))])
    files["opt.star"] = Star([("", {"rlnTomoParticlesFile": "particles.star",
                                    "rlnTomoTomogramsFile": "tomograms.star"})])
    return files


def r5_truth(visible: bool = True) -> tuple[int, int]:
    if not visible:
        return 6, sum(3 * len(t) for t in R5_TILTS.values())
    return 6, sum(v.count("1") for vs in R5_VISIBLE.values() for v in vs)


# ---------------------------------------------------------------------------- Warp
W_TOMOS = {"T1": 2, "T2": 1, "T3": 2}  # particles per tomogram; one stack per tomogram
W_TILTS = [0.0, 10.0, -10.0, 20.0]


def warp_files(optics_block: bool = False) -> tuple[Files, tuple[int, int]]:
    rng = np.random.default_rng(RNG_SEED + 1)
    files: Files = {}
    cols = ["rlnMicrographName", "rlnGroupName", "rlnImageName", "rlnAngleRot", "rlnAngleTilt",
            "rlnAnglePsi", "rlnOriginX", "rlnOriginY", "rlnDefocusU", "rlnDefocusV",
            "rlnDefocusAngle", "rlnCtfBfactor", "rlnCtfScalefactor", "rlnVoltage",
            "rlnSphericalAberration", "rlnAmplitudeContrast"]
    if not optics_block:
        cols += ["rlnDetectorPixelSize", "rlnMagnification"]
    rows, n_img, n_part = [], 0, 0
    for tomo, count in W_TOMOS.items():
        stack = f"{tomo}.mrcs"
        k = 0
        for p in range(count):
            n_part += 1
            for t, tilt in enumerate(W_TILTS):
                if p == 1 and t == 3:
                    continue  # a missing tilt
                k += 1
                row = [tomo, f"{tomo}_p{p + 1}", f"{k}@{stack}", _f(10 * p), _f(30 + tilt),
                       _f(5 * p), _f(0.5 * t), _f(-0.25 * t), _f(21000 + 50 * t),
                       _f(20800 + 50 * t), "30", _f(-4 * 2.5 * t),
                       _f(np.cos(np.deg2rad(tilt))), "300", "2.7", "0.07"]
                if not optics_block:
                    row += ["4.0", "10000"]
                rows.append(row)
        files[stack] = Mrc(_images(rng, k))
        n_img += k
    blocks: list[tuple[str, Loop | dict[str, str]]] = []
    if optics_block:
        blocks.append(("optics", Loop(["rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize"],
                                      [["1", "4.0", str(BOX)]])))
        cols.append("rlnOpticsGroup")
        for r in rows:
            r.append("1")
    blocks.append(("particles" if optics_block else "", Loop(cols, rows)))
    files["warp.star"] = Star(blocks)
    return files, (n_part, n_img)


# ---------------------------------------------------------------------------- RELION 4
def r4_files(style: str = "relion4") -> tuple[Files, tuple[int, int]]:
    """5 subtomograms with rfft-layout CTF volumes; ``style='relion31'``: no optics block,
    rlnMicrographName, rlnDetectorPixelSize/rlnMagnification."""
    rng = np.random.default_rng(RNG_SEED + 2)
    files: Files = {}
    n = 5
    cols = ["rlnImageName", "rlnCtfImage", "rlnCoordinateX", "rlnCoordinateY",
            "rlnCoordinateZ", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    if style == "relion31":
        cols += ["rlnMicrographName", "rlnDetectorPixelSize", "rlnMagnification",
                 "rlnVoltage"]
    else:
        cols += ["rlnTomoName", "rlnTomoParticleName", "rlnOpticsGroup"]
    rows = []
    for i in range(n):
        vol, ctf = f"sub/p_{i + 1:03d}.mrc", f"sub/p_{i + 1:03d}_ctf.mrc"
        files[vol] = Mrc(rng.normal(size=(BOX, BOX, BOX)).astype(np.float32), stack=False)
        files[ctf] = Mrc(rng.uniform(size=(BOX, BOX, BOX // 2 + 1)).astype(np.float32),
                         stack=False)
        row = [vol, ctf, *[_f(x) for x in rng.uniform(20, 80, 3)], _f(10 * i), _f(40),
               _f(-20 * i)]
        tomo = f"tomo{1 + i % 2}"
        row += [tomo, "4.0", "10000", "300"] if style == "relion31" else \
            [tomo, f"{tomo}/{i + 1}", "1"]
        rows.append(row)
    blocks: list[tuple[str, Loop | dict[str, str]]] = []
    if style != "relion31":
        blocks.append(("optics", Loop(
            ["rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality",
             "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
             "rlnCtfDataAreCtfPremultiplied", "rlnTomoTiltSeriesPixelSize"],
            [["1", "4.0", str(BOX), "3", "300", "2.7", "0.07", "1", "2.0"]])))
    blocks.append(("particles", Loop(cols, rows)))
    files["sub.star"] = Star(blocks)
    return files, (n, n)


# ---------------------------------------------------------------------------- STOPGAP
SG_FIELDS = ["motl_idx", "tomo_num", "object", "subtomo_num", "halfset", "orig_x", "orig_y",
             "orig_z", "score", "x_shift", "y_shift", "z_shift", "phi", "psi", "the", "class"]


def stopgap_files() -> tuple[Files, tuple[int, int]]:
    rng = np.random.default_rng(RNG_SEED + 3)
    files: Files = {}
    rows = []
    n = 5
    for i in range(n):
        num = 10 + i
        files[f"subtomograms/subtomo_{num}.mrc"] = Mrc(
            rng.normal(size=(BOX, BOX, BOX)).astype(np.float32), stack=False)
        rows.append([str(i + 1), str(1 + i % 2), "1", str(num), "AB"[i % 2],
                     *[_f(x) for x in rng.uniform(10, 90, 3)], "0.5", "0.25", "-0.5", "0",
                     _f(10 * i), _f(20 * i), _f(30 + i), "1"])
    files["motl.star"] = Star([("stopgap_motivelist", Loop(list(SG_FIELDS), rows))])
    return files, (n, n)


# ---------------------------------------------------------------------------- Dynamo
def dynamo_rows() -> list[list[str]]:
    rng = np.random.default_rng(RNG_SEED + 4)
    rows = []
    for i in range(5):
        v = np.zeros(35)
        v[0] = 1 + 2 * i  # tag
        v[1:3] = 1
        v[3:6] = [0.5, -0.5, 0.25]
        v[6:9] = [10 * i, 40, -15 * i]
        v[12] = 1
        v[13:17] = [-60, 60, -60, 60]
        v[19] = 1 + i % 2  # tomo
        v[21] = 1  # class
        v[23:26] = rng.uniform(10, 90, 3)
        rows.append([str(int(x)) if float(x).is_integer() else _f(x) for x in v])
    return rows


def dynamo_text(rows: list[list[str]], crlf: bool = False) -> bytes:
    text = "\n".join(" ".join(r) for r in rows) + "\n"
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def dynamo_files() -> tuple[Files, tuple[int, int]]:
    rng = np.random.default_rng(RNG_SEED + 5)
    rows = dynamo_rows()
    files: Files = {"t.tbl": dynamo_text(rows)}
    for r in rows:
        files[f"particle_{int(r[0]):06d}.mrc"] = Mrc(
            rng.normal(size=(BOX, BOX, BOX)).astype(np.float32), stack=False)
    return files, (5, 5)


# ---------------------------------------------------------------------------- cases
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


def _stack_cases(fmt: str, base: Files, entry: str, star: str, stack: str,
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


def relion5_cases() -> list[Case]:
    base = r5_files()
    truth = r5_truth()
    P, T, O = "particles.star", "tomograms.star", "opt.star"  # noqa: N806
    mid = "stacks/TS_1_002.mrcs"  # a stack in the middle of the set
    out: list[Case] = []

    def ok(name: str, files: Files, entry: str = O, t: tuple[int, int] = truth,
           warns: str = "") -> None:
        out.append(Case(f"relion5: {name}", "relion5", files, entry, "ok", t, warns=warns))

    def err(name: str, mutate: Mutation, file: str, *fields: str, entry: str = O,
            expect: str = "error", files: Files | None = None) -> None:
        out.append(Case(f"relion5: {name}", "relion5", _mutated(files or base, mutate),
                        entry, expect, truth, file, fields, deep="NaN" in name))

    ok("valid", base)
    ok("valid, CRLF line endings", _mutated(base, crlf_all))
    ok("particles star read directly", base, entry=P)
    ok("optimisation set without rlnTomoTomogramsFile",
       _mutated(base, set_key(O, "", "rlnTomoTomogramsFile", None)))
    ok("tilt angles instead of matrices", r5_files(angles=True))
    ok("per-tilt rows in tilt-series star files", r5_files(ts_files=True))
    ok("no rlnTomoFrameCount", r5_files(frame_count=False))
    ok("no rlnTomoVisibleFrames", r5_files(visible=False), t=r5_truth(False))
    ok("pixel coordinates", r5_files(pixel_coords=True))
    ok("stack header pixel size differs from the star",
       _mutated(base, mrc_edit(mid, voxel=7.0)), warns="pixel size")
    # optimisation set
    err("optimisation set names a missing particles file",
        set_key(O, "", "rlnTomoParticlesFile", "nothere.star"), O, "rlnTomoParticlesFile")
    err("optimisation set names a missing tomograms file",
        set_key(O, "", "rlnTomoTomogramsFile", "nothere.star"), O, "rlnTomoTomogramsFile")
    err("optimisation set names a folder as particles file",
        both(set_key(O, "", "rlnTomoParticlesFile", "stacks")), O, "rlnTomoParticlesFile")
    err("empty optimisation set", raw(O, b""), O, "empty")
    err("optimisation set is binary garbage", raw(O, GARBAGE), O, "STAR", "particle", "block")
    err("no tomograms star at all", both(set_key(O, "", "rlnTomoTomogramsFile", None),
                                         remove(T)), P, "tomograms")
    # particles star: structure
    err("particles star truncated mid-line", cut_star(P), P, "data_particles", "row")
    err("particles star garbage line", garbage_line(P, "particles"), P, "data_particles")
    err("particles star empty", raw(P, b""), P, "empty")
    err("particles star header only",
        lambda f: setattr(_star(f, P).loop("particles"), "rows", []), P, "no particles")
    err("second data_particles block", dup_block(P, "particles", rows=2), P,
        "data_particles")
    err("stale particles block before the right one",
        dup_block(P, "particles", "particles_old", first=True, rows=2), P, "data_particles",
        expect="either")
    err("two unnamed candidate blocks", both(
        lambda f: _star(f, P).blocks.__setitem__(2, ("set_a", _star(f, P).blocks[2][1])),
        dup_block(P, "set_a", "set_b", rows=1)), P, "data_set_a", "data_set_b")
    err("two data_optics blocks", dup_block(P, "optics"), P, "data_optics")
    err("two data_general blocks", dup_block(P, "general"), P, "data_general")
    for col in ("rlnTomoName", "rlnImageName", "rlnCenteredCoordinateXAngst"):
        err(f"missing column {col}", drop_col(P, "particles", col), P,
            col if col != "rlnCenteredCoordinateXAngst" else "rlnCoordinateX")
    for col, value in (("rlnCenteredCoordinateYAngst", "abc"), ("rlnAngleRot", "nan"),
                       ("rlnAngleTilt", "inf"), ("rlnCenteredCoordinateZAngst", "1e400"),
                       ("rlnOpticsGroup", "1.5"), ("rlnOpticsGroup", "x"),
                       ("rlnOpticsGroup", "9")):
        err(f"{col} = {value}", set_cell(P, "particles", col, 3, value), P, col)
    err("pixel coordinate overflows to inf", set_cell(P, "particles", "rlnCoordinateX", 2,
                                                       "1e308"),
        P, "rlnCoordinateX", files=r5_files(pixel_coords=True))
    err("unknown tomogram", set_cell(P, "particles", "rlnTomoName", 2, "TS_9"), P, "TS_9")
    err("duplicated particle row", dup_row(P, "particles", 1), P, "duplicate")
    err("duplicate particle name", set_cell(P, "particles", "rlnTomoParticleName", 2,
                                            "TS_1/1"), P, "rlnTomoParticleName")
    err("two particles share one stack", set_cell(P, "particles", "rlnImageName", 2,
                                                  "stacks/TS_1_001.mrcs"), P, "rlnImageName")
    for value in ("[1,1]", "[1,2,1,1,1]", "1,1,1,1,1", "[1,1,x,1,1]", "[]", "[0,0,0,0,0]",
                  "[1,1,1,1,1,1]", "[1,nan,1,1,1]"):
        err(f"rlnTomoVisibleFrames = {value}", set_cell(P, "particles", "rlnTomoVisibleFrames",
                                                        1, value), P, "rlnTomoVisibleFrames")
    # optics
    for col, value in (("rlnImagePixelSize", "0"), ("rlnImagePixelSize", "-4"),
                       ("rlnImagePixelSize", "1e30"), ("rlnImagePixelSize", "abc"),
                       ("rlnImageSize", "0"), ("rlnImageSize", "7.5"), ("rlnImageSize", "16"),
                       ("rlnVoltage", "0"), ("rlnTomoTiltSeriesPixelSize", "-2"),
                       ("rlnAmplitudeContrast", "2"), ("rlnSphericalAberration", "nan")):
        err(f"optics {col} = {value}", set_cell(P, "optics", col, 0, value), P, col)
    err("rlnTomoSubTomosAre2DStacks = abc",
        set_key(P, "general", "rlnTomoSubTomosAre2DStacks", "abc"), P,
        "rlnTomoSubTomosAre2DStacks")
    # tomograms star
    err("tomograms star truncated mid-line", cut_star(T), T, "data_TS_2", "row")
    err("tomograms star garbage", raw(T, GARBAGE), T, "STAR", "block", "global")
    for col, value in (("rlnTomoFrameCount", "abc"), ("rlnTomoFrameCount", "4.9"),
                       ("rlnTomoFrameCount", "6"), ("rlnTomoSizeX", "0"),
                       ("rlnTomoSizeZ", "abc"), ("rlnTomoSizeY", "2.5"),
                       ("rlnTomoTiltSeriesPixelSize", "0"), ("rlnTomoHand", "x"),
                       ("rlnVoltage", "-300")):
        err(f"tomograms {col} = {value}", set_cell(T, "global", col, 0, value), T, col)
    err("duplicate tomogram name", set_cell(T, "global", "rlnTomoName", 1, "TS_1"), T,
        "rlnTomoName")
    err("missing rlnTomoHand", drop_col(T, "global", "rlnTomoHand"), T, "rlnTomoHand")
    err("two data_TS_1 blocks", dup_block(T, "TS_1", rows=3), T, "data_TS_1")
    err("two data_global blocks", dup_block(T, "global", rows=1), T, "data_global")
    err("missing per-tilt block", lambda f: _star(f, T).blocks.pop(1), T, "TS_1")
    for col, value in (("rlnMicrographPreExposure", "-3"), ("rlnMicrographPreExposure", "nan"),
                       ("rlnDefocusU", "abc"), ("rlnTomoProjX", "[1,0,0]"),
                       ("rlnTomoProjY", "[0,1,x,0]"), ("rlnTomoProjZ", "[0,0,inf,0]"),
                       ("rlnTomoProjW", "0"), ("rlnCtfScalefactor", "-1")):
        err(f"tilt {col} = {value}", set_cell(T, "TS_1", col, 2, value), T, col)
    err("missing tilt column rlnDefocusU", drop_col(T, "TS_2", "rlnDefocusU"), T,
        "rlnDefocusU")
    err("middle tilt row deleted", del_row(T, "TS_1", 2), T, "rlnTomoFrameCount")
    err("middle tilt row deleted, no frame count", del_row(T, "TS_1", 2), T, "frames",
        "rlnTomoVisibleFrames",
        files=r5_files(frame_count=False))
    err("tilt row duplicated", dup_row(T, "TS_1", 1), T, "rlnMicrographName", "duplicate",
        files=r5_files(frame_count=False))
    err("two tilt rows point at one image", set_cell(T, "TS_1", "rlnMicrographName", 3,
                                                     "TS_1_001.mrc"), T, "rlnMicrographName")
    err("tilt-series star missing", remove("tilt_series/TS_2.star"), T,
        "rlnTomoTiltSeriesStarFile", files=r5_files(ts_files=True))
    err("tilt-series star truncated", cut_star("tilt_series/TS_2.star"), "TS_2.star",
        "data_TS_2", files=r5_files(ts_files=True))
    # stacks (one in the middle of the set)
    for name, mutate, file, fields in _stack_cases("relion5", base, O, P, mid, 5):
        err(name, mutate, file, *fields)
    err("stack has more frames than tilts", mrc_frames(mid, 6), "TS_1_002.mrcs", "frames")
    err("stack has fewer frames than tilts", mrc_frames(mid, 4), "TS_1_002.mrcs", "frames")
    def volume_for_stack(f: Files) -> None:
        f["stacks/TS_1_002.mrc"] = Mrc(_mrc(f, mid).data, stack=False)
        _star(f, P).loop("particles").set("rlnImageName", 1, "stacks/TS_1_002.mrc")

    err("3D volume instead of a stack", volume_for_stack, "TS_1_002.mrc", "stack")
    # generic inputs
    err("input is a folder", lambda f: None, "stacks", "folder", "directory", entry="stacks")
    err("input does not exist", lambda f: None, "nothing.star", "not found",
        entry="nothing.star")
    return out


def warp_cases() -> list[Case]:
    base, truth = warp_files()
    W = "warp.star"  # noqa: N806
    out: list[Case] = []

    def ok(name: str, files: Files, t: tuple[int, int] = truth, warns: str = "") -> None:
        out.append(Case(f"warp: {name}", "warp", files, W, "ok", t, warns=warns))

    def err(name: str, mutate: Mutation, file: str, *fields: str, expect: str = "error",
            files: Files | None = None) -> None:
        out.append(Case(f"warp: {name}", "warp", _mutated(files or base, mutate), W, expect,
                        truth, file, fields, deep="NaN" in name))

    ok("valid", base)
    ok("valid, CRLF line endings", _mutated(base, crlf_all))
    files2, t2 = warp_files(optics_block=True)
    ok("optics block", files2, t2)
    err("no group column", drop_col(W, "", "rlnGroupName"), W, "rlnGroupName")
    err("no group column, rlnTomoName", both(drop_col(W, "", "rlnGroupName"), lambda f: (
        _star(f, W).loop("").add("rlnTomoName", _star(f, W).loop("").get_col(
            "rlnMicrographName")))), W, "rlnGroupName")
    err("truncated mid-line", cut_star(W), W, "row")
    err("garbage line", garbage_line(W, ""), W, "row", "data_")
    err("empty file", raw(W, b""), W, "empty")
    err("duplicated image row", dup_row(W, "", 2), W, "duplicate", "rlnImageName")
    err("two rows share one image", set_cell(W, "", "rlnImageName", 2, "1@T1.mrcs"), W,
        "rlnImageName")
    err("0-based image index", set_cell(W, "", "rlnImageName", 0, "0@T1.mrcs"), W,
        "rlnImageName")
    err("image index past the stack", set_cell(W, "", "rlnImageName", 8, "99@T2.mrcs"), W,
        "rlnImageName", "T2.mrcs")
    err("image name without index", set_cell(W, "", "rlnImageName", 8, "T2.mrcs"), W,
        "rlnImageName")
    for col, value in (("rlnMagnification", "0"), ("rlnDetectorPixelSize", "-4"),
                       ("rlnDetectorPixelSize", "1e30"), ("rlnVoltage", "0"),
                       ("rlnCtfBfactor", "40"), ("rlnDefocusU", "nan"),
                       ("rlnAngleTilt", "abc"), ("rlnCtfScalefactor", "inf")):
        err(f"{col} = {value}", set_cell(W, "", col, 0, value), W, col)
    for col in ("rlnImageName", "rlnDefocusU", "rlnAngleRot"):
        err(f"missing column {col}", drop_col(W, "", col), W, col)
    err("two blocks with the same name", dup_block(W, "", rows=3), W, "data_")
    err("two candidate blocks", dup_block(W, "", "old", first=True, rows=3), W, "data_old")
    for name, mutate, file, fields in _stack_cases("warp", base, W, W, "T2.mrcs", 3):
        err(name, mutate, file, *fields)
    err("stack has fewer images than named", mrc_frames("T2.mrcs", 2), W, "T2.mrcs")
    return out


def relion4_cases() -> list[Case]:
    base, truth = r4_files()
    S = "sub.star"  # noqa: N806
    mid, ctf = "sub/p_003.mrc", "sub/p_003_ctf.mrc"
    out: list[Case] = []

    def ok(name: str, files: Files, t: tuple[int, int] = truth, warns: str = "") -> None:
        out.append(Case(f"relion4: {name}", "relion4", files, S, "ok", t, warns=warns))

    def err(name: str, mutate: Mutation, file: str, *fields: str, expect: str = "error",
            files: Files | None = None) -> None:
        out.append(Case(f"relion4: {name}", "relion4", _mutated(files or base, mutate), S,
                        expect, truth, file, fields, deep="NaN" in name))

    ok("valid", base)
    ok("valid, CRLF line endings", _mutated(base, crlf_all))
    r31, t31 = r4_files("relion31")
    ok("RELION 3.1 style", r31, t31)
    ok("volume header pixel size differs from the star",
       _mutated(base, mrc_edit(mid, voxel=9.0)), warns="pixel size")
    err("rlnMagnification = 0", set_cell(S, "particles", "rlnMagnification", 0, "0"), S,
        "rlnMagnification", files=r31)
    err("rlnDetectorPixelSize = -4", set_cell(S, "particles", "rlnDetectorPixelSize", 0, "-4"),
        S, "rlnDetectorPixelSize", files=r31)
    err("truncated mid-line", cut_star(S), S, "row")
    err("garbage line", garbage_line(S, "particles"), S, "data_particles")
    err("header only", lambda f: setattr(_star(f, S).loop("particles"), "rows", []), S,
        "no particles")
    err("duplicated row", dup_row(S, "particles", 1), S, "duplicate", "rlnImageName")
    err("duplicate particle name", set_cell(S, "particles", "rlnTomoParticleName", 3,
                                            "tomo1/1"), S, "rlnTomoParticleName")
    err("two particles share one volume", set_cell(S, "particles", "rlnImageName", 3,
                                                   "sub/p_001.mrc"), S, "rlnImageName")
    err("second data_particles block", dup_block(S, "particles", rows=2), S, "data_particles")
    err("stale block before the right one", dup_block(S, "particles", "old", first=True,
                                                      rows=2), S, "data_old", expect="either")
    for col, value in (("rlnCoordinateX", "abc"), ("rlnCoordinateY", "nan"),
                       ("rlnAngleTilt", "inf"), ("rlnCoordinateZ", "1e308")):
        err(f"{col} = {value}", set_cell(S, "particles", col, 2, value), S, col)
    for col, value in (("rlnImagePixelSize", "0"), ("rlnImagePixelSize", "-1"),
                       ("rlnImagePixelSize", "1e30"), ("rlnImageSize", "10"),
                       ("rlnImageSize", "abc"), ("rlnVoltage", "0"),
                       ("rlnTomoTiltSeriesPixelSize", "0")):
        err(f"optics {col} = {value}", set_cell(S, "optics", col, 0, value), S, col)
    err("missing column rlnImageName", drop_col(S, "particles", "rlnImageName"), S,
        "rlnImageName")
    for name, mutate, file, fields in _stack_cases("relion4", base, S, S, mid, BOX):
        if "wrong box" not in name:
            err(name.replace("stack", "volume"), mutate, file, *fields)
    err("volume wrong box", mrc_edit(mid, data=np.zeros((BOX + 2,) * 3, np.float32)),
        "p_003.mrc", "box", "shape")
    err("CTF volume missing", remove(ctf), S, "p_003_ctf.mrc")
    err("CTF volume wrong shape", mrc_edit(ctf, data=np.ones((BOX, BOX, BOX), np.float32)),
        "p_003_ctf.mrc", "shape")
    err("CTF volume truncated", mrc_edit(ctf, cut_bytes=64), "p_003_ctf.mrc", "truncated")
    return out


def stopgap_cases() -> list[Case]:
    base, truth = stopgap_files()
    M, B = "motl.star", "stopgap_motivelist"  # noqa: N806
    mid = "subtomograms/subtomo_12.mrc"
    out: list[Case] = []

    def ok(name: str, files: Files, warns: str = "") -> None:
        out.append(Case(f"stopgap: {name}", "stopgap", files, M, "ok", truth, warns=warns))

    def err(name: str, mutate: Mutation, file: str, *fields: str, expect: str = "error"
            ) -> None:
        out.append(Case(f"stopgap: {name}", "stopgap", _mutated(base, mutate), M, expect,
                        truth, file, fields, deep="NaN" in name))

    ok("valid", base)
    ok("valid, CRLF line endings", _mutated(base, crlf_all))
    for col, value in (("tomo_num", "2.5"), ("tomo_num", "abc"), ("subtomo_num", "11.5"),
                       ("subtomo_num", "10"), ("halfset", "C"), ("orig_x", "nan"),
                       ("orig_y", "inf"), ("orig_z", "1e308"), ("phi", "abc"),
                       ("motl_idx", "x"), ("x_shift", "nan")):
        err(f"{col} = {value}", set_cell(M, B, col, 2, value), M, col)
    err("duplicated row", dup_row(M, B, 1), M, "subtomo_num", "duplicate")
    for col in ("phi", "orig_x", "subtomo_num"):
        err(f"missing column {col}", drop_col(M, B, col), M, col)
    err("truncated mid-line", cut_star(M), M, "row")
    err("garbage line", garbage_line(M, B), M, B)
    err("empty motivelist", lambda f: setattr(_star(f, M).loop(B), "rows", []), M,
        "no entries")
    err("two motivelist blocks", dup_block(M, B, rows=2), M, B)
    err("candidate block before the motivelist", dup_block(M, B, "old", first=True, rows=2),
        M, "data_old", expect="either")
    for name, mutate, file, fields in _stack_cases("stopgap", base, M, M, mid, BOX):
        if "wrong box" not in name:
            err(name.replace("stack", "volume"), mutate, file, *fields)
    err("volume wrong box", mrc_edit(mid, data=np.zeros((BOX + 2,) * 3, np.float32)),
        "subtomo_12.mrc", "box", "shape")
    err("first volume has no pixel size", mrc_edit("subtomograms/subtomo_10.mrc", voxel=0.0),
        M, "pixel size")
    return out


def dynamo_cases() -> list[Case]:
    base, truth = dynamo_files()
    D = "t.tbl"  # noqa: N806
    mid = "particle_000005.mrc"
    rows = dynamo_rows()
    out: list[Case] = []

    def with_rows(edit: Callable[[list[list[str]]], object]) -> Mutation:
        def m(f: Files) -> None:
            r = copy.deepcopy(rows)
            edit(r)
            f[D] = dynamo_text(r)
        return m

    def append_col(r: list[list[str]]) -> None:
        for x in r:
            x.append("7")

    def keep_25(r: list[list[str]]) -> None:
        for x in r:
            del x[25:]

    def cell(row: int, col: int, value: str) -> Mutation:
        return with_rows(lambda r: r[row].__setitem__(col, value))

    def err(name: str, mutate: Mutation, file: str, *fields: str) -> None:
        out.append(Case(f"dynamo: {name}", "dynamo", _mutated(base, mutate), D, "error",
                        truth, file, fields, deep="NaN" in name))

    out.append(Case("dynamo: valid", "dynamo", base, D, "ok", truth))
    out.append(Case("dynamo: valid, CRLF line endings", "dynamo",
                    _mutated(base, raw(D, dynamo_text(rows, crlf=True))), D, "ok", truth))
    out.append(Case("dynamo: extra columns named by a sidecar", "dynamo", _mutated(
        base, both(with_rows(append_col),
                   raw("t.tbl.columns.json", json.dumps(["myCol"]).encode()))),
        D, "ok", truth))
    err("duplicate tag", cell(3, 0, "1"), D, "tag")
    err("duplicated row", with_rows(lambda r: r.insert(1, list(r[0]))), D, "tag")
    err("tag 2.5", cell(2, 0, "2.5"), D, "tag")
    err("tomo 2.5", cell(2, 19, "2.5"), D, "tomo")
    err("text in x", cell(1, 23, "abc"), D, "x")
    err("NaN angle", cell(1, 7, "nan"), D, "tilt")
    err("inf shift", cell(1, 3, "inf"), D, "dx")
    err("x overflows to inf", cell(1, 23, "1e308"), D, "x")
    err("short line", with_rows(lambda r: r.__setitem__(2, r[2][:20])), D, "line 3")
    err("25 columns", with_rows(keep_25), D,
        "columns")
    err("empty table", raw(D, b"\n\n"), D, "empty")
    err("binary garbage", raw(D, GARBAGE), D, "line", "column", "MRC", "STAR", "empty")
    err("sidecar is bad JSON", both(with_rows(append_col),
                                    raw("t.tbl.columns.json", b"{not json")),
        "t.tbl.columns.json", "JSON", "json")
    err("sidecar is not a list", both(with_rows(append_col),
                                      raw("t.tbl.columns.json", b'{"a": 1}')),
        "t.tbl.columns.json", "list")
    for name, mutate, file, fields in _stack_cases("dynamo", base, D, D, mid, BOX):
        if "wrong box" not in name:
            err(name.replace("stack", "volume"), mutate, file, *fields)
    err("volume wrong box", mrc_edit(mid, data=np.zeros((BOX + 2,) * 3, np.float32)),
        "particle_000005.mrc", "box", "shape")
    return out


def cases() -> list[Case]:
    """Every fuzz case, each format's in order."""
    return [*relion5_cases(), *warp_cases(), *relion4_cases(), *stopgap_cases(),
            *dynamo_cases()]

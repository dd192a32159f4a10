"""Fuzz cases of the 3D subtomogram formats: RELION 3.1/4, STOPGAP, Dynamo."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import numpy as np
from fuzz_bases import dynamo_files, dynamo_rows, dynamo_text, r4_files, stopgap_files
from fuzz_files import (
    BOX,
    GARBAGE,
    Case,
    Files,
    Mutation,
    _mutated,
    _star,
    both,
    crlf_all,
    cut_star,
    drop_col,
    dup_block,
    dup_row,
    garbage_line,
    mrc_edit,
    raw,
    remove,
    set_cell,
    stack_cases,
)


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
    err("rlnRandomSubset = 0", both(
        lambda f: _star(f, S).loop("particles").add("rlnRandomSubset", ["1", "2"] * 2 + ["1"]),
        set_cell(S, "particles", "rlnRandomSubset", 2, "0")), S, "rlnRandomSubset")
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
    for name, mutate, file, fields in stack_cases("relion4", base, S, S, mid, BOX):
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
    for name, mutate, file, fields in stack_cases("stopgap", base, M, M, mid, BOX):
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
    for name, mutate, file, fields in stack_cases("dynamo", base, D, D, mid, BOX):
        if "wrong box" not in name:
            err(name.replace("stack", "volume"), mutate, file, *fields)
    err("volume wrong box", mrc_edit(mid, data=np.zeros((BOX + 2,) * 3, np.float32)),
        "particle_000005.mrc", "box", "shape")
    return out

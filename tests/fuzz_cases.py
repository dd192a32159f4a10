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

from fuzz_bases import R5_TILTS, r5_files, r5_truth, warp_files
from fuzz_cases_3d import dynamo_cases, relion4_cases, stopgap_cases
from fuzz_files import (
    GARBAGE,
    Case,
    Files,
    Mrc,
    Mutation,
    _mrc,
    _mutated,
    _star,
    both,
    crlf_all,
    cut_star,
    del_row,
    drop_col,
    dup_block,
    dup_row,
    garbage_line,
    mrc_edit,
    mrc_frames,
    raw,
    remove,
    set_cell,
    set_key,
    stack_cases,
)

__all__ = ["cases", "Case", "R5_TILTS"]


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
    for value in ("3", "1.5", "A"):
        err(f"rlnRandomSubset = {value}", both(
            lambda f: _star(f, P).loop("particles").add("rlnRandomSubset", ["1", "2"] * 3),
            set_cell(P, "particles", "rlnRandomSubset", 4, value)), P, "rlnRandomSubset")
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
    for name, mutate, file, fields in stack_cases("relion5", base, O, P, mid, 5):
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
    ok("stack header pixel size differs from the star",
       _mutated(base, mrc_edit("T1.mrcs", voxel=7.0)), warns="pixel size")
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
    for name, mutate, file, fields in stack_cases("warp", base, W, W, "T2.mrcs", 3):
        err(name, mutate, file, *fields)
    err("stack has fewer images than named", mrc_frames("T2.mrcs", 2), W, "T2.mrcs")
    return out


def cases() -> list[Case]:
    """Every fuzz case, each format's in order."""
    return [*relion5_cases(), *warp_cases(), *relion4_cases(), *stopgap_cases(),
            *dynamo_cases()]

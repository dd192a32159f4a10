"""Valid data sets of every format for the fuzz corpus (box 8, a few particles), each with
its truth: (particles, images or subtomograms)."""

from __future__ import annotations

import numpy as np
from fuzz_files import BOX, RNG_SEED, Files, Loop, Mrc, Star, _f, _images, _ry, _vec

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

"""RELION 5 projection matrices (rlnTomoProjX..W): RELION's own convention, in and out.

Facts (RELION 5 ``Tomogram::setProjectionMatrix`` / ``TomogramSet``): a tomogram pixel
``x`` lands on tilt-image pixel ``int(image / 2) + shift_A / pixel + (Rz Ry Rx (x -
int(tomogram / 2)))[:2]``, where ``image`` is the x, y size of the tilt-series stack
(``rlnTomoTiltSeriesName``); particle coordinates are decentred by ``tomogram / 2.0``.
RELION prefers the matrix columns over the angles when both are there. The expected
positions below are written out by hand from these facts, not with tomohet's code.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
from io_cases import TOMOS

from tomohet.io import read_particles, write_particles
from tomohet.io.star import write_star
from tomohet.io.tomograms import PROJ_COLS, read_tomograms_star, tomograms_blocks

TOMO = np.array([200, 181, 61])  # odd y, z: int(size / 2) != size / 2
IMAGE = (190, 170)  # tilt-series image x, y (not the tomogram's)
PIX = 2.5


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


ANGLES = pd.DataFrame({
    "rlnTomoXTilt": [0.5, -1.0, 0.0], "rlnTomoYTilt": [0.0, 30.0, -45.0],
    "rlnTomoZRot": [85.0, 86.0, 84.5], "rlnTomoXShiftAngst": [12.5, -7.5, 3.0],
    "rlnTomoYShiftAngst": [-5.0, 2.5, 10.0], "rlnDefocusU": [20000.0] * 3,
    "rlnDefocusV": [19000.0] * 3, "rlnDefocusAngle": [30.0] * 3,
    "rlnMicrographPreExposure": [0.0, 3.0, 6.0],
    "rlnMicrographName": ["a.mrc", "b.mrc", "c.mrc"],
})


def _expected(x: np.ndarray, f: int) -> np.ndarray:
    """Tilt-image pixel of tomogram pixel ``x`` in tilt ``f``, by hand."""
    a = ANGLES.iloc[f]
    r = _rot("z", a.rlnTomoZRot) @ _rot("y", a.rlnTomoYTilt) @ _rot("x", a.rlnTomoXTilt)
    centre_img = np.array([IMAGE[0] // 2, IMAGE[1] // 2])
    shift = np.array([a.rlnTomoXShiftAngst, a.rlnTomoYShiftAngst]) / PIX
    return centre_img + shift + (r @ (x - TOMO // 2))[:2]


def _tomograms_star(folder: Path, with_stack: bool) -> Path:
    glob = pd.DataFrame({"rlnTomoName": ["t1"], "rlnTomoTiltSeriesName": ["ts/t1.mrcs"],
                         "rlnTomoSizeX": [TOMO[0]], "rlnTomoSizeY": [TOMO[1]],
                         "rlnTomoSizeZ": [TOMO[2]], "rlnTomoHand": [-1],
                         "rlnTomoTiltSeriesPixelSize": [PIX], "rlnTomoFrameCount": [3]})
    if with_stack:
        (folder / "ts").mkdir(parents=True, exist_ok=True)
        with mrcfile.new(folder / "ts" / "t1.mrcs") as m:
            m.set_data(np.zeros((3, IMAGE[1], IMAGE[0]), dtype=np.int8))
            m.set_image_stack()
    path = folder / "tomograms.star"
    starfile.write({"global": glob, "t1": ANGLES}, path)
    return path


def _apply(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (p @ np.append(x, 1.0))[:2]


POINTS = [np.array([0.0, 0.0, 0.0]), np.array([100.0, 90.5, 30.5]),
          np.array([17.0, 160.0, 5.0]), np.array([199.0, 3.0, 60.0])]


def test_matrices_from_angles_use_the_tilt_series_image_centre(tmp_path):
    path = _tomograms_star(tmp_path, with_stack=True)
    info = read_tomograms_star(path)["t1"]
    assert info.image_size_px is not None and tuple(info.image_size_px) == IMAGE
    for f in range(3):
        for x in POINTS:
            np.testing.assert_allclose(_apply(info.projection[f], x), _expected(x, f),
                                       atol=1e-9)
    # written back: the matrix columns (which RELION prefers) give the same pixels
    out = tmp_path / "out" / "tomograms.star"
    write_star(out, tomograms_blocks([info]))
    block = starfile.read(out, always_dict=True)["t1"]
    for f in range(3):
        p = np.array([[float(v) for v in block[c].iloc[f].strip("[]").split(",")]
                      for c in PROJ_COLS])
        for x in POINTS:
            np.testing.assert_allclose(_apply(p, x), _expected(x, f), atol=1e-5)
    again = read_tomograms_star(out)["t1"]  # no tilt series next to it: matrices are used
    np.testing.assert_allclose(again.projection, info.projection, atol=1e-6)


def test_angles_without_tilt_series_stay_angles(tmp_path):
    """The image centre is unknown without the stack: RELION must build the matrices."""
    path = _tomograms_star(tmp_path, with_stack=False)
    info = read_tomograms_star(path)["t1"]
    assert info.from_angles and info.image_size_px is None
    out = tmp_path / "out" / "tomograms.star"
    write_star(out, tomograms_blocks([info]))
    block = starfile.read(out, always_dict=True)["t1"]
    assert not any(c in block.columns for c in PROJ_COLS)
    for c in ANGLES.columns:
        if c != "rlnMicrographName":
            np.testing.assert_allclose(block[c].to_numpy(dtype=float), ANGLES[c], atol=1e-6)
    # the same tilt series next to the written star gives RELION's matrices again
    _tomograms_star(out.parent, with_stack=True)
    write_star(out, tomograms_blocks([info]))
    info2 = read_tomograms_star(out)["t1"]
    for f in range(3):
        np.testing.assert_allclose(_apply(info2.projection[f], POINTS[1]),
                                   _expected(POINTS[1], f), atol=1e-6)


def test_file_matrices_are_written_back_unchanged(real, tmp_path):
    out = write_particles(real, tmp_path / "p.star", fmt="relion5")
    tomos = next(p for p in out if p.name.endswith("_tomograms.star"))
    before = starfile.read(TOMOS, always_dict=True)
    after = starfile.read(tomos, always_dict=True)
    for name in before["global"]["rlnTomoName"]:
        for c in PROJ_COLS:
            a = np.array([[float(v) for v in s.strip("[]").split(",")] for s in before[name][c]])
            b = np.array([[float(v) for v in s.strip("[]").split(",")] for s in after[name][c]])
            np.testing.assert_allclose(b, a, atol=1e-6, err_msg=f"{name} {c}")


def test_simulated_particles_project_where_their_images_are(sim, tmp_path):
    """Written matrices + RELION's decentring put each particle at the tilt-image centre
    plus its rotated centred position: where tomohet's images of it were cut."""
    out = write_particles(sim, tmp_path / "p.star", fmt="relion5")
    tomos = next(p for p in out if p.name.endswith("_tomograms.star"))
    parts = starfile.read(next(p for p in out if p.name == "p.star"), always_dict=True)
    blocks = starfile.read(tomos, always_dict=True)
    glob = blocks["global"].set_index("rlnTomoName")
    df = parts["particles"]
    checked = 0
    for _, row in df.iterrows():
        g = glob.loc[row.rlnTomoName]
        size = np.array([g.rlnTomoSizeX, g.rlnTomoSizeY, g.rlnTomoSizeZ], dtype=float)
        assert (size % 2 == 0).all()  # int(size / 2) == size / 2.0: no half-pixel offset
        pix = float(g.rlnTomoTiltSeriesPixelSize)
        centred = np.array([row[f"rlnCenteredCoordinate{a}Angst"] for a in "XYZ"]) / pix
        x = centred + size / 2.0  # RELION's decentring
        tilts = blocks[row.rlnTomoName]
        for f in range(len(tilts)):
            p = np.array([[float(v) for v in tilts[c].iloc[f].strip("[]").split(",")]
                          for c in PROJ_COLS])
            centre_img = np.floor(size[:2] / 2)  # the writer's tilt images: tomogram x, y
            np.testing.assert_allclose(_apply(p, x), centre_img + (p[:3, :3] @ centred)[:2],
                                       atol=1e-4)
            checked += 1
    assert checked > 0
    back = read_particles(out[-1])
    np.testing.assert_allclose(back.position_A[np.argsort(back.names)],
                               sim.position_A[np.argsort(sim.names)], atol=1e-2)

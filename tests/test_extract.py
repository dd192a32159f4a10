"""On-the-fly extraction of RELION 5 particles from tilt series (issue 16, item 1).

The tilt images and the 2D stacks are both sampled from one analytic image per tilt
(projected 3D Gaussians: a Gaussian projects to a Gaussian), so the stacks are what the
geometry gives when written out, computed without tomohet's extraction kernel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from io_cases import assert_same

from tomohet.cli.info import conservation
from tomohet.data.sources import DataError
from tomohet.io import read_particles, write_particles
from tomohet.io.conventions import relion_projection_matrix, relion_to_matrix
from tomohet.io.extract import DROP_REASON
from tomohet.io.mrc import write_mrc
from tomohet.io.star import format_vector, read_star, write_star
from tomohet.physics.extract import cut_windows, extract_boxes, subpixel_shift

PIX, BOX, SIGMA = 10.0, 24, 1.6
SIZE = np.array([96.0, 80.0, 40.0])  # tomogram = tilt image x, y size (tilt-series px)
TILTS = np.array([-45.0, -20.0, 0.0, 25.0, 50.0])
BLOBS = np.array([[3, -2, 2], [-4, 5, -1], [0, 0, -4], [5, 4, 1], [-3, -4, 3]], float)


def _projections(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RELION 5 projections (F, 4, 4) and the tilt-row angle columns that give them."""
    rng = np.random.default_rng(seed)
    f = len(TILTS)
    cols = {"rlnTomoXTilt": rng.uniform(-2, 2, f), "rlnTomoYTilt": TILTS,
            "rlnTomoZRot": np.full(f, 4.0), "rlnTomoXShiftAngst": rng.uniform(-25, 25, f),
            "rlnTomoYShiftAngst": rng.uniform(-25, 25, f)}
    return relion_projection_matrix(*cols.values(), SIZE, SIZE[:2], PIX), cols


def _tomograms(seed: int, n: int, edge: bool) -> list[dict]:
    """Tomogram dicts: projections (F,4,4), particle coordinates/angles/origins (A)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, name in enumerate(("TS_01", "TS_02")):
        coord = rng.uniform([-180, -150, -60], [180, 150, 60], (n, 3))
        if edge and k == 0:
            coord[0] = [-440.0, 30.0, 0.0]  # box crosses the left edge in some tilts
            coord[1] = [0.0, 600.0, 0.0]  # outside every tilt image (y > 40 px)
        proj, cols = _projections(seed + k)
        out.append({"name": name, "proj": proj, "angle_cols": cols,
                    "coord": coord, "angles": rng.uniform(-180, 180, (n, 3)),
                    "origin": np.where(rng.random((n, 1)) < 0.5, rng.normal(0, 8, (n, 3)), 0),
                    "visible": (rng.random((n, len(TILTS))) > 0.15) | (np.arange(len(TILTS))
                                                                      == 2)})
    return out


def _image(t: dict, f: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The analytic tilt image ``f`` of tomogram ``t`` at pixel coordinates x, y."""
    out = np.full(np.broadcast(x, y).shape, 0.5)
    rot = t["proj"][f, :3, :3]
    scale = t.get("bin", 1.0)  # binned boxes: the same particle in box pixels
    for c, ang, o in zip(t["coord"], t["angles"], t["origin"], strict=True):
        a = relion_to_matrix(*ang)
        true_px = (c - a @ o) / PIX + SIZE / 2.0  # A_subtomo = I: position = coord - A o
        centre = (t["proj"][f] @ np.append(true_px, 1.0))[:2]
        for b in BLOBS:
            p = centre + (rot @ a @ b)[:2] * scale
            out += np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2) / (2 * (SIGMA * scale)**2))
    return out


def _box_of(t: dict, f: int, n: int) -> np.ndarray:
    """The written-out 2D stack image: the analytic image around the projected coordinate
    (before the origin shift), box pixel B//2 at that point."""
    c = (t["proj"][f] @ np.append(t["coord"][n] / PIX + SIZE / 2.0, 1.0))[:2]
    box, step = t.get("box", BOX), t.get("bin", 1.0)
    j, i = np.mgrid[0:box, 0:box].astype(float)
    return _image(t, f, c[0] + (i - box // 2) * step, c[1] + (j - box // 2) * step)


def _write_set(folder: Path, tomos: list[dict], stacks: bool, layout: str = "stack",
               size_delta: int = 0) -> Path:
    """RELION 5 optimisation set + particles + tomograms star (+ 2D stacks or tilt series)."""
    folder.mkdir(parents=True, exist_ok=True)
    glob, blocks, rows = [], {}, []
    for t in tomos:
        f = len(TILTS)
        h, w = int(SIZE[1]), int(SIZE[0]) + size_delta
        y, x = np.mgrid[0:h, 0:w].astype(float)
        series = np.stack([_image(t, k, x, y) for k in range(f)]).astype(np.float32)
        tilts = {"rlnTomoYTilt": TILTS, "rlnDefocusU": np.full(f, 20000.0),
                 "rlnDefocusV": np.full(f, 19000.0), "rlnDefocusAngle": np.full(f, 30.0),
                 "rlnMicrographPreExposure": np.arange(f) * 3.0}
        if layout == "angles":  # RELION builds the matrices from the angles
            tilts.update(t["angle_cols"])
        else:
            for i, col in enumerate(("rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ",
                                     "rlnTomoProjW")):
                tilts[col] = [format_vector(t["proj"][k, i]) for k in range(f)]
        if layout == "micrograph_at":  # frames stored in reverse order, named per tilt row
            write_mrc(folder / f"{t['name']}_rev.mrcs", series[::-1].copy(), PIX, stack=True)
            tilts["rlnMicrographName"] = [f"{f - k}@{t['name']}_rev.mrcs" for k in range(f)]
        else:
            write_mrc(folder / f"{t['name']}.mrc", series, PIX, stack=True)
        blocks[t["name"]] = pd.DataFrame(tilts)
        glob.append({"rlnTomoName": t["name"], "rlnTomoTiltSeriesName": f"{t['name']}.mrc",
                     "rlnTomoFrameCount": f, "rlnTomoSizeX": int(SIZE[0]),
                     "rlnTomoSizeY": int(SIZE[1]), "rlnTomoSizeZ": int(SIZE[2]),
                     "rlnTomoHand": -1, "rlnTomoTiltSeriesPixelSize": PIX, "rlnVoltage": 300,
                     "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07})
        for n in range(len(t["coord"])):
            row = {"rlnTomoName": t["name"], "rlnTomoParticleName": f"{t['name']}/{n + 1}",
                   "rlnOpticsGroup": 1,
                   "rlnTomoVisibleFrames": format_vector(t["visible"][n], integer=True)}
            for k, a in enumerate("XYZ"):
                row[f"rlnCenteredCoordinate{a}Angst"] = t["coord"][n, k]
                row[f"rlnOrigin{a}Angst"] = t["origin"][n, k]
            for k, c in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
                row[c] = t["angles"][n, k]
            if stacks:
                stack = np.stack([_box_of(t, k, n) for k in range(f)]).astype(np.float32)
                name = f"stacks/{t['name']}_{n + 1:03d}.mrcs"
                write_mrc(folder / name, stack, PIX * t.get("bin", 1.0), stack=True)
                row["rlnImageName"] = name
            rows.append(row)
    write_star(folder / "tomograms.star", {"global": pd.DataFrame(glob), **blocks})
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [PIX * tomos[0].get("bin", 1.0)],
                           "rlnImageSize": [tomos[0].get("box", BOX)],
                           "rlnTomoTiltSeriesPixelSize": [PIX], "rlnImageDimensionality": [2],
                           "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.07]})
    write_star(folder / "particles.star", {"general": {"rlnTomoSubTomosAre2DStacks": 1},
                                           "optics": optics, "particles": pd.DataFrame(rows)})
    opt = folder / "run_optimisation_set.star"
    write_star(opt, {"": {"rlnTomoParticlesFile": "particles.star",
                          "rlnTomoTomogramsFile": "tomograms.star"}})
    return opt


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# ---------------------------------------------------------------------------- kernel
def test_subpixel_shift_against_roll_and_analytic_gaussian():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.normal(size=(3, 16, 16)).astype(np.float32))
    moved = subpixel_shift(img, torch.tensor([[2.0, 0.0], [0.0, -3.0], [1.0, 1.0]]))
    for k, (dy, dx) in enumerate(((0, 2), (-3, 0), (1, 1))):
        assert np.allclose(moved[k].numpy(), np.roll(img[k].numpy(), (dy, dx), (0, 1)),
                           atol=1e-5)
    j, i = np.mgrid[0:24, 0:24].astype(float)
    g = np.exp(-((i - 12) ** 2 + (j - 11) ** 2) / 8.0)
    d = np.array([0.37, -0.41])
    want = np.exp(-((i - 12 - d[0]) ** 2 + (j - 11 - d[1]) ** 2) / 8.0)
    got = subpixel_shift(torch.from_numpy(g[None]), torch.from_numpy(d[None]))[0].numpy()
    assert np.abs(got - want).max() < 1e-4


def test_cut_windows_pads_with_fill_and_reports_crossing():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    win, crossed = cut_windows(img, np.array([[3, 4], [-2, 5], [27, 18]]), 6, fill=-1.0)
    assert np.array_equal(win[0], img[4:10, 3:9])
    assert crossed.tolist() == [False, True, True]
    assert (win[1][:, :2] == -1).all() and np.array_equal(win[1][:, 2:], img[5:11, 0:4])
    assert (win[2][2:] == -1).all() and (win[2][:, 3:] == -1).all()
    assert np.array_equal(win[2][:2, :3], img[18:20, 27:30])
    boxes, crossed = extract_boxes(img, np.array([[10.0, 8.0]]), 6)  # integer: a plain slice
    assert not crossed[0] and np.allclose(boxes[0].numpy(), img[5:11, 7:13], atol=1e-3)


@pytest.mark.parametrize("scale", [1.0, 1.6, 2.0])
def test_extract_boxes_sample_a_gaussian_at_the_box_pixels(scale):
    """A Gaussian wide enough to be band-limited at the box pixel: every box pixel equals
    the analytic value at its position (sub-pixel centre, binning by Fourier cropping)."""
    j, i = np.mgrid[0:120, 0:120].astype(float)
    c, sig = np.array([57.3, 61.6]), 2.0 * scale
    img = np.exp(-((i - c[0]) ** 2 + (j - c[1]) ** 2) / (2 * sig**2))
    centres = np.array([c, c + [0.5, -0.25]])
    boxes, crossed = extract_boxes(img, centres, 16, scale=scale, fill=0.0)
    jj, ii = np.mgrid[0:16, 0:16].astype(float)
    for b, d in zip(boxes.numpy(), centres - c, strict=True):
        x, y = (ii - 8) * scale + d[0], (jj - 8) * scale + d[1]
        want = np.exp(-(x**2 + y**2) / (2 * sig**2))
        assert np.abs(b - want).max() < 1e-4
    assert not crossed.any()


# ------------------------------------------------------------------- reader round trip
@pytest.mark.parametrize("layout", ["stack", "micrograph_at", "angles"])
def test_on_the_fly_equals_written_stacks(tmp_path, layout):
    tomos = _tomograms(1, 4, edge=False)
    stacks = read_particles(_write_set(tmp_path / "stacks", tomos, True))
    fly = read_particles(_write_set(tmp_path / "fly", tomos, False, layout))
    assert fly.meta["images_from"].startswith("tilt series")
    assert fly.meta["extraction"]["images_padded"] == 0
    assert fly.names == stacks.names and np.array_equal(fly.visible, stacks.visible)
    for key in ("shift_A", "tilt_rotation", "rotation", "position_A", "defocus_u_A"):
        assert np.allclose(getattr(fly, key), getattr(stacks, key)), key
    assert any(np.abs(fly.shift_A).max(axis=(1, 2)) > 1.0)  # origins are exercised
    n = fly.n_particles
    a = stacks.batch(np.arange(n)).images.numpy()
    b = fly.batch(np.arange(n)).images.numpy()
    corrs = [_corr(a[i, t], b[i, t]) for i, t in zip(*np.nonzero(fly.visible), strict=True)]
    assert len(corrs) == int(fly.visible.sum()) and min(corrs) > 0.99, min(corrs)
    # batch size and order do not matter: one image at a time, in reverse
    idx = fly.image_index[fly.visible][::-1]
    one = np.stack([fly.images.read([i]).numpy()[0] for i in idx[:6]])
    assert np.array_equal(one, fly.images.read(idx).numpy()[:6])


@pytest.mark.parametrize("fmt", ["relion5", "warp"])
def test_extracted_set_written_elsewhere_reads_back(tmp_path, fmt):
    """RELION 5 output keeps extracting on the fly (no rlnImageName; tilt series named by
    absolute paths); Warp output, which needs stacks, gets the extracted boxes."""
    fly = read_particles(_write_set(tmp_path / "in", _tomograms(9, 3, edge=False), False,
                                    "micrograph_at"))
    written = write_particles(fly, tmp_path / "out" / "particles.star", fmt=fmt)
    assert any(p.suffix == ".mrcs" for p in written) == (fmt == "warp")
    back = read_particles(written[-1])
    assert ("extraction" in back.meta) == (fmt == "relion5")
    assert_same(fly, back)


def test_extract_flag_reads_tilt_series_even_with_stacks(tmp_path):
    tomos = _tomograms(2, 3, edge=False)
    opt = _write_set(tmp_path, tomos, True)  # the tilt series are there too
    fly = read_particles(opt, extract=True)
    stacks = read_particles(opt, extract=False)
    assert "extraction" in fly.meta and "extraction" not in stacks.meta
    a = stacks.batch(np.arange(stacks.n_particles)).images.numpy()
    b = fly.batch(np.arange(fly.n_particles)).images.numpy()
    vis = np.nonzero(fly.visible)
    assert min(_corr(a[i, t], b[i, t]) for i, t in zip(*vis, strict=True)) > 0.99


def test_edge_boxes_padded_and_particle_outside_dropped(tmp_path):
    tomos = _tomograms(3, 4, edge=True)
    with pytest.warns(RuntimeWarning, match="outside"):
        fly = read_particles(_write_set(tmp_path, tomos, False))
    # independent count of the boxes that cross an edge and of centres outside
    padded = outside = 0
    for t in tomos:
        for n, c in enumerate(t["coord"]):
            for f in range(len(TILTS)):
                if not t["visible"][n, f]:
                    continue
                u = (t["proj"][f] @ np.append(c / PIX + SIZE / 2.0, 1.0))[:2]
                if not (0 <= u[0] <= SIZE[0] - 1 and 0 <= u[1] <= SIZE[1] - 1):
                    outside += 1
                elif (np.floor(u + 0.5) - BOX // 2 < 0).any() or \
                        (np.floor(u + 0.5) + BOX - BOX // 2 > SIZE[:2]).any():
                    padded += 1
    rep = fly.meta["extraction"]
    assert (rep["images_padded"], rep["images_outside"]) == (padded, outside)
    assert padded > 0 and outside >= len(TILTS) - 1
    assert "TS_01/2" not in fly.names and "TS_01/1" in fly.names
    assert fly.meta["dropped"] == {DROP_REASON: 1}
    cons = conservation(fly)
    assert cons["warning"] is None and cons["rows_in_file"] == 8
    assert f"{padded} reach past a tilt-image edge" in " ".join(cons["lines"])
    assert any(DROP_REASON in line for line in cons["lines"])
    images = fly.batch(np.arange(fly.n_particles)).images
    assert torch.isfinite(images).all()


def test_tilt_series_size_differs_from_tomograms_star(tmp_path):
    opt = _write_set(tmp_path, _tomograms(4, 2, edge=False), False, size_delta=2)
    with pytest.raises(DataError, match=r"TS_01\.mrc.*rlnTomoSizeX"):
        read_particles(opt)


def test_missing_tilt_series_names_the_field(tmp_path):
    opt = _write_set(tmp_path, _tomograms(5, 2, edge=False), False)
    (tmp_path / "TS_02.mrc").unlink()
    with pytest.raises(DataError, match=r"tomograms\.star.*TS_02.*rlnTomoTiltSeriesName"):
        read_particles(opt)


@pytest.mark.parametrize("binning", [2.0, 1.6])
def test_binned_boxes_from_unbinned_tilt_series(tmp_path, binning):
    """Boxes with a coarser pixel (Fourier cropping) against stacks sampled at that pixel."""
    tomos = _tomograms(8, 3, edge=False)
    for t in tomos:
        t.update(bin=binning, box=16)
    stacks = read_particles(_write_set(tmp_path / "stacks", tomos, True))
    fly = read_particles(_write_set(tmp_path / "fly", tomos, False))
    assert fly.optics.pixel_size_A == pytest.approx(PIX * binning)
    assert fly.optics.box == 16 and fly.meta["extraction"]["binning"] == pytest.approx(binning)
    assert fly.meta["extraction"]["images_padded"] == 0
    np.testing.assert_allclose(fly.shift_A, stacks.shift_A)
    a = stacks.batch(np.arange(stacks.n_particles)).images.numpy()
    b = fly.batch(np.arange(fly.n_particles)).images.numpy()
    vis = np.nonzero(fly.visible)
    assert min(_corr(a[i, t], b[i, t]) for i, t in zip(*vis, strict=True)) > 0.99


def test_box_pixel_finer_than_tilt_series_is_refused(tmp_path):
    tomos = _tomograms(6, 2, edge=False)
    for t in tomos:
        t.update(bin=0.5)
    with pytest.raises(DataError, match="rlnImagePixelSize 5 A is finer"):
        read_particles(_write_set(tmp_path, tomos, False))


def _truncate(folder: Path) -> None:
    f = folder / "TS_01.mrc"
    f.write_bytes(f.read_bytes()[:-100])


def _drop_frame(folder: Path) -> None:
    write_mrc(folder / "TS_01.mrc", np.zeros((len(TILTS) - 1, 80, 96), np.float32), PIX,
              stack=True)


def _index_past_end(folder: Path) -> None:
    text = (folder / "tomograms.star").read_text()
    (folder / "tomograms.star").write_text(text.replace("1@TS_01_rev.mrcs", "9@TS_01_rev.mrcs"))


@pytest.mark.parametrize("layout,spoil,message", [
    ("stack", _truncate, r"TS_01\.mrc: truncated MRC file"),
    ("stack", _drop_frame, r"TS_01\.mrc: 4 tilt images but tomogram TS_01 has 5 tilt rows"),
    ("micrograph_at", _index_past_end, r"TS_01_rev\.mrcs: tilt image 9 is needed"),
])
def test_bad_tilt_series_names_file_and_field(tmp_path, layout, spoil, message):
    opt = _write_set(tmp_path, _tomograms(10, 2, edge=False), False, layout)
    spoil(tmp_path)
    with pytest.raises(DataError, match=message):
        read_particles(opt)


def test_extract_refused_for_other_layouts(tmp_path, subtomos):
    three_d = write_particles(subtomos, tmp_path / "r5" / "p.star", fmt="relion5")[-1]
    blocks = read_star(three_d)
    write_star(three_d, {"general": {"rlnTomoSubTomosAre2DStacks": 0}, **blocks})
    with pytest.raises(DataError, match="rlnTomoSubTomosAre2DStacks is 0"):
        read_particles(three_d, fmt="relion5", extract=True)
    dyn = write_particles(subtomos, tmp_path / "dyn" / "p.tbl", fmt="dynamo")[-1]
    with pytest.raises(DataError, match="this file is dynamo"):
        read_particles(dyn, extract=True)


def test_tilt_series_found_through_datadir(tmp_path):
    opt = _write_set(tmp_path / "set", _tomograms(12, 2, edge=False), False)
    (tmp_path / "elsewhere").mkdir()
    for name in ("TS_01.mrc", "TS_02.mrc"):
        (tmp_path / "set" / name).rename(tmp_path / "elsewhere" / name)
    with pytest.raises(DataError, match="rlnTomoTiltSeriesName"):
        read_particles(opt)
    fly = read_particles(opt, datadir=tmp_path / "elsewhere")
    assert set(fly.images.files) == {str(tmp_path / "elsewhere" / n)
                                     for n in ("TS_01.mrc", "TS_02.mrc")}
    assert torch.isfinite(fly.batch(np.arange(fly.n_particles)).images).all()

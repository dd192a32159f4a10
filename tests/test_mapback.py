"""``tomohet mapback`` (issue 16, item 4): the ChimeraX script's transforms, applied in
Python to a map with known off-centre features, put each feature where the particle's
RELION star says it is in the tomogram (computed here from RELION's own formulas)."""

from __future__ import annotations

import json
import re

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from tomohet.cli.main import main

BOX, VOXEL = 16, 30.0
FEATURES = {1: [(3.0, -2.0, 5.0), (-4.0, 1.0, 0.0)], 2: [(0.0, 5.0, -3.0), (4.0, 4.0, 2.0)]}


def relion_euler(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix (ZYZ), written out from its published formula."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def blob_map(offsets) -> np.ndarray:
    """(z, y, x) map: Gaussian blobs at ``offsets`` (x, y, z voxels) from voxel BOX // 2."""
    g = np.arange(BOX, dtype=float)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    c = BOX // 2
    vol = np.zeros((BOX, BOX, BOX))
    for dx, dy, dz in offsets:
        vol += np.exp(-((x - c - dx) ** 2 + (y - c - dy) ** 2 + (z - c - dz) ** 2) / 2.0)
    return vol.astype(np.float32)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A simulated RELION 5 set whose star gains subtomogram angles and origins, and a
    classification run folder on it with feature maps as class maps."""
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    root = tmp_path_factory.mktemp("mapback")
    cfg = get_preset("demo", n_particles=16, n_tomograms=2, box=BOX, n_tilts=5)
    simulate(cfg, seed=3).write(root / "sim")
    star = root / "sim" / "particles.star"
    blocks = starfile.read(star, always_dict=True)
    parts = blocks["particles"]
    rng = np.random.default_rng(0)
    n = len(parts)
    parts["rlnTomoSubtomogramRot"] = rng.uniform(-180, 180, n)
    parts["rlnTomoSubtomogramTilt"] = rng.uniform(0, 180, n)
    parts["rlnTomoSubtomogramPsi"] = rng.uniform(-180, 180, n)
    for a in "XYZ":
        parts[f"rlnOrigin{a}Angst"] = rng.uniform(-40, 40, n)
    starfile.write(blocks, star, overwrite=True)
    run = root / "run"
    run.mkdir()
    data = root / "sim" / "particles_optimisation_set.star"
    (run / "config.json").write_text(json.dumps({
        "command": "classify ml2d", "config": {"data": str(data)},
        "input": {"path": str(data), "tomograms": None, "datadir": None,
                  "format": "relion5"}}))
    names = parts["rlnTomoParticleName"].astype(str).to_numpy()
    classes = 1 + (np.arange(n) % 2)
    pd.DataFrame({"particle": names, "class": classes}).to_csv(run / "assignments.csv",
                                                               index=False)
    for c, offs in FEATURES.items():
        with mrcfile.new(run / f"class_{c:03d}.mrc") as m:
            m.set_data(blob_map(offs))
            m.voxel_size = VOXEL
    return root, run, parts


def _parse_cxc(text: str) -> dict[int, tuple[str, np.ndarray]]:
    """Model number -> (map file, 3x4 matrix) from ``open`` order and ``view matrix``."""
    opened = [line.split(maxsplit=1)[1] for line in text.splitlines()
              if line.startswith("open ")]
    out = {}
    for m in re.finditer(r"^view matrix models #(\d+),([-0-9.,e+]+)$", text, re.M):
        k = int(m.group(1))
        vals = np.array([float(v) for v in m.group(2).split(",")])
        assert vals.size == 12
        out[k] = (opened[k - 1], vals.reshape(3, 4))
    assert "originIndex 0,0,0" in text
    return out


def _centroid_near(vol: np.ndarray, voxel: float, at_xyz: np.ndarray) -> np.ndarray:
    """Intensity centroid (x, y, z in A, model frame: voxel index x voxel) of the voxels
    within 2.5 voxels of ``at_xyz`` (A)."""
    g = np.arange(vol.shape[0], dtype=float)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    pts = np.stack([x, y, z], -1) * voxel
    sel = np.linalg.norm(pts - at_xyz, axis=-1) < 2.5 * voxel
    w = vol[sel]
    return (pts[sel] * w[:, None]).sum(0) / w.sum()


def test_features_land_at_the_particles_coordinates(run_folder, tmp_path):
    root, run, parts = run_folder
    out = tmp_path / "mb"
    tstar = root / "sim" / "particles_tomograms.star"
    assert main(["mapback", str(run), "--tomograms", str(tstar), "--out", str(out)]) == 0
    tomos = starfile.read(tstar, always_dict=True)["global"].set_index("rlnTomoName")
    checked = 0
    for tomo, rows in parts.groupby("rlnTomoName"):
        models = _parse_cxc((out / tomo / f"mapback_{tomo}.cxc").read_text())
        g = tomos.loc[tomo]
        px = float(g["rlnTomoTiltSeriesPixelSize"])
        size = np.array([g["rlnTomoSizeX"], g["rlnTomoSizeY"], g["rlnTomoSizeZ"]], float)
        artiax = starfile.read(out / tomo / f"particles_{tomo}.star")
        assert len(models) == len(rows) == len(artiax)
        for k, (_, r) in enumerate(rows.iterrows(), start=1):
            a_sub = relion_euler(r.rlnTomoSubtomogramRot, r.rlnTomoSubtomogramTilt,
                                 r.rlnTomoSubtomogramPsi)
            a = a_sub @ relion_euler(r.rlnAngleRot, r.rlnAngleTilt, r.rlnAnglePsi)
            origin = np.array([r.rlnOriginXAngst, r.rlnOriginYAngst, r.rlnOriginZAngst])
            centred = np.array([r.rlnCenteredCoordinateXAngst, r.rlnCenteredCoordinateYAngst,
                                r.rlnCenteredCoordinateZAngst])
            where = centred - a_sub @ origin + size / 2.0 * px  # A from the tomogram corner
            path, mat = models[k]
            with mrcfile.open(path) as m:
                vol, voxel = np.asarray(m.data, float), float(m.voxel_size.x)
            cls = int(re.search(r"class_(\d+)", path).group(1))
            centre = np.full(3, BOX // 2 * voxel)
            assert np.allclose(mat[:, :3] @ centre + mat[:, 3], where, atol=1e-2)
            for d in FEATURES[cls]:
                found = _centroid_near(vol, voxel, centre + np.array(d) * voxel)
                landed = mat[:, :3] @ found + mat[:, 3]
                assert np.allclose(landed, where + a @ (np.array(d) * voxel), atol=0.05)
            # the ArtiaX list: same position in tomogram pixels, same orientation
            row = artiax[artiax["rlnTomoParticleName"] == r.rlnTomoParticleName].iloc[0]
            xyz = np.array([row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ])
            assert np.allclose(xyz * row.rlnPixelSize, where, atol=1e-3)
            assert np.allclose(relion_euler(row.rlnAngleRot, row.rlnAngleTilt,
                                            row.rlnAnglePsi), a, atol=1e-6)
            assert int(row.rlnClassNumber) == cls
            checked += 1
    assert checked == len(parts)
    png = (out / parts["rlnTomoName"].iloc[0] / f"overview_{parts['rlnTomoName'].iloc[0]}.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "mapback.html").read_text()
    # --from-input gives the same placements (the input's own tomograms star)
    out2 = tmp_path / "mb2"
    assert main(["mapback", str(run), "--from-input", "--out", str(out2)]) == 0
    tomo = parts["rlnTomoName"].iloc[0]
    assert (out2 / tomo / f"mapback_{tomo}.cxc").read_text() == \
        (out / tomo / f"mapback_{tomo}.cxc").read_text()


def test_mapback_bad_input(run_folder, tmp_path, capsys):
    root, run, _ = run_folder
    # nothing is overwritten without --force
    out = tmp_path / "mb"
    assert main(["mapback", str(run), "--from-input", "--out", str(out)]) == 0
    assert main(["mapback", str(run), "--from-input", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    # particles without tomogram coordinates (a Warp star without rlnCenteredCoordinate*)
    warp = root / "sim" / "warp" / "particles.star"
    blocks = starfile.read(warp, always_dict=True)
    name = next(k for k, b in blocks.items() if "rlnCenteredCoordinateXAngst" in b.columns)
    blocks[name] = blocks[name].drop(columns=[f"rlnCenteredCoordinate{a}Angst"
                                              for a in "XYZ"])
    bare = root / "sim" / "warp" / "no_coords.star"
    starfile.write(blocks, bare)
    run2 = tmp_path / "run2"
    run2.mkdir()
    for f in ("assignments.csv", "class_001.mrc", "class_002.mrc"):
        (run2 / f).write_bytes((run / f).read_bytes())
    (run2 / "config.json").write_text(json.dumps({
        "command": "classify ml2d", "input": {"path": str(bare), "format": "warp"}}))
    assert main(["mapback", str(run2), "--from-input", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no tomogram coordinates" in err and "no_coords.star" in err
    # a tomograms star lacking one of the particles' tomograms
    tstar = root / "sim" / "particles_tomograms.star"
    tb = starfile.read(tstar, always_dict=True)
    keep = tb["global"]["rlnTomoName"].iloc[0]
    tb["global"] = tb["global"].iloc[:1]
    one = tmp_path / "one_tomogram.star"
    starfile.write({k: v for k, v in tb.items() if k in ("global", keep)}, one)
    assert main(["mapback", str(run), "--tomograms", str(one), "--out",
                 str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "one_tomogram.star" in err and "rlnTomoName" in err


def test_mapback_of_a_latent_run_colours_by_z0(run_folder, tmp_path):
    """An embed-style run (latent.csv, mean.mrc): every particle gets the mean map, its
    colour follows z0 (viridis, monotone in z0) and the star carries the latent columns."""
    import matplotlib

    root, run, parts = run_folder
    run3 = tmp_path / "latent_run"
    run3.mkdir()
    (run3 / "mean.mrc").write_bytes((run / "class_001.mrc").read_bytes())
    names = parts["rlnTomoParticleName"].astype(str).to_numpy()
    z = np.c_[np.linspace(-1, 1, len(names)), np.arange(len(names)) % 3]
    pd.DataFrame({"particle": names, "z0": z[:, 0], "z1": z[:, 1]}).to_csv(
        run3 / "latent.csv", index=False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["command"] = "embed wmdpca"
    (run3 / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "mb"
    assert main(["mapback", str(run3), "--from-input", "--out", str(out)]) == 0
    tomo = parts["rlnTomoName"].iloc[0]
    text = (out / tomo / f"mapback_{tomo}.cxc").read_text()
    assert all(p.endswith("mean.mrc") for p, _ in _parse_cxc(text).values())
    star = starfile.read(out / tomo / f"particles_{tomo}.star").set_index("rlnTomoParticleName")
    colours = re.findall(r"^volume #\d+ .* color (#[0-9a-f]{6})", text, re.M)
    order = re.findall(r"^rename #\d+ (\S+)$", text, re.M)
    z0 = star.loc[order, "tomohetLatent0"].to_numpy()
    assert np.allclose(np.sort(star["tomohetLatent1"].unique()), [0, 1, 2])
    # viridis goes from dark blue-purple to yellow: its green channel rises with z0
    green = np.array([matplotlib.colors.to_rgb(c)[1] for c in colours])
    assert np.all(np.diff(green[np.argsort(z0)]) >= -1e-9) and green.max() > green.min()


def test_reconstructed_tomogram_is_model_1_in_the_same_frame(run_folder, tmp_path):
    """A tomograms star naming the reconstructed tomogram: it is opened first with voxel
    size binning x pixel and origin 0; the particles' copies keep their placements."""
    root, run, parts = run_folder
    tstar = root / "sim" / "particles_tomograms.star"
    blocks = starfile.read(tstar, always_dict=True)
    blocks["global"]["rlnTomoReconstructedTomogram"] = [
        f"rec_{t}.mrc" for t in blocks["global"]["rlnTomoName"]]
    blocks["global"]["rlnTomoTomogramBinning"] = 4.0
    with_rec = root / "sim" / "with_rec_tomograms.star"
    starfile.write(blocks, with_rec)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["mapback", str(run), "--tomograms", str(tstar), "--out", str(a)]) == 0
    assert main(["mapback", str(run), "--tomograms", str(with_rec), "--out", str(b)]) == 0
    tomo = parts["rlnTomoName"].iloc[0]
    px = float(blocks["global"]["rlnTomoTiltSeriesPixelSize"].iloc[0])
    text = (b / tomo / f"mapback_{tomo}.cxc").read_text()
    first_open = next(line for line in text.splitlines() if line.startswith("open "))
    assert first_open == f"open {(root / 'sim' / f'rec_{tomo}.mrc').resolve()}"
    assert f"volume #1 voxelSize {4 * px:g} originIndex 0,0,0" in text
    plain = _parse_cxc((a / tomo / f"mapback_{tomo}.cxc").read_text())
    shifted = _parse_cxc(text)
    assert sorted(shifted) == [k + 1 for k in sorted(plain)]
    for k, (path, mat) in plain.items():
        assert shifted[k + 1][0] == path and np.array_equal(shifted[k + 1][1], mat)

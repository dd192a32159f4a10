"""Readers and writers: the real WarpTools/RELION 5 sample, round trips, variants."""

from __future__ import annotations

import re
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from io_cases import (
    OPT,
    PARTS,
    REAL,
    STEM,
    TOMOS,
    assert_same,
    check_extra,
    extra_for,
    no_temp_files,
    records,
)

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError, ImageSource
from tomohet.io import (
    atomic_path,
    detect_format,
    read_mrc,
    read_particles,
    write_assignments_csv,
    write_latent_csv,
    write_mrc,
    write_particles,
)


# ---------------------------------------------------------------------------- real data
def test_real_counts_from_optimisation_set_and_particles_star(real):
    s = real.summary()
    assert (s["particles"], s["tomograms"], s["tilt_slots"], s["box"]) == (40, 4, 37, 32)
    assert s["pixel_size_A"] == pytest.approx(12.0)
    assert real.optics.ctf_premultiplied  # rlnCtfDataAreCtfPremultiplied 1
    assert real.names[0] == "Unt_083/1" and len(set(real.names)) == 40
    direct = read_particles(PARTS)  # the particles star alone finds its tomograms star
    assert_same(real, direct)
    assert detect_format(OPT) == detect_format(PARTS) == "relion5"
    q = read_particles(OPT, ctf_premultiplied=False, dose_weighted=True)  # user flags win
    assert not q.optics.ctf_premultiplied and q.optics.dose_weighted


def test_real_per_tilt_values_follow_the_file_rows(real):
    """Slot t of every particle is row t of its tomogram's tilt block: dose, CTF, matrix."""
    blocks = starfile.read(TOMOS, always_dict=True)
    hand = float(blocks["global"]["rlnTomoHand"].iloc[0])
    for name in ("Unt_083.tomostar", "Unt_076.tomostar"):
        rows = blocks[name]
        proj = np.stack([np.array([[float(v) for v in rows[f"rlnTomoProj{a}"].iloc[f]
                                    .strip("[]").split(",")] for a in "XYZ"])
                         for f in range(len(rows))])[:, :, :3]
        for n in np.nonzero(np.array(real.tomo_names) == name)[0]:
            np.testing.assert_allclose(real.dose_e_per_A2[n], rows["rlnMicrographPreExposure"])
            np.testing.assert_allclose(real.ctf_scale[n], rows["rlnCtfScalefactor"])
            np.testing.assert_allclose(real.defocus_angle_deg[n], rows["rlnDefocusAngle"])
            np.testing.assert_allclose(real.tilt_rotation[n], proj, atol=1e-6)
            tilt = np.rad2deg(np.arctan2(-proj[:, 2, 0], proj[:, 2, 2]))
            np.testing.assert_allclose(real.tilt_deg[n], tilt, atol=1e-6)
            # depth term: the same offset on U and V, = hand * (R_t x)_z
            dz = hand * proj[:, 2, :] @ real.position_A[n]
            np.testing.assert_allclose(real.defocus_u_A[n] - rows["rlnDefocusU"], dz, atol=0.1)
            np.testing.assert_allclose(real.defocus_v_A[n] - rows["rlnDefocusV"], dz, atol=0.1)
    vis = real.visible
    # dose-symmetric scheme: the 37 doses are k x the fractional dose (2.556 e/A^2)
    frac = float(blocks["global"]["rlnTomoImportFractionalDose"].iloc[0])
    np.testing.assert_allclose(np.sort(real.dose_e_per_A2[0]), np.arange(37) * frac, atol=0.01)
    assert (np.abs(real.tilt_deg[vis]) < 80).all()
    assert (real.defocus_u_A[vis] > 1e4).all() and (real.defocus_u_A[vis] < 6e4).all()
    # the rows are sorted by tilt (frame index and tilt angle strongly anti-correlated)
    for n in range(real.n_particles):
        assert np.corrcoef(np.arange(37), real.tilt_deg[n])[0, 1] < -0.95


def _visible_frames_from_file() -> dict[str, list[int]]:
    """{tomogram: 0-based frames marked 0 in rlnTomoVisibleFrames}, parsed as plain text."""
    out: dict[str, list[int]] = {}
    for line in PARTS.read_text().splitlines():
        m = re.search(r"^\s*(\S+\.tomostar)\s.*(\[[01,]+\])\s*$", line)
        if m:
            flags = [int(v) for v in m.group(2).strip("[]").split(",")]
            out[m.group(1)] = [i for i, v in enumerate(flags) if v == 0]
    return out


def test_real_excluded_tilts_keep_each_image_with_its_own_metadata(real):
    zeros = _visible_frames_from_file()
    assert zeros["Unt_083.tomostar"] == [0, 5, 35] and zeros["Unt_050.tomostar"] == []
    tilts = starfile.read(TOMOS, always_dict=True)["Unt_083.tomostar"]
    # WarpTools marks the same excluded frames with a zero CTF scale in the tomograms star
    assert np.nonzero(tilts["rlnCtfScalefactor"].to_numpy() == 0)[0].tolist() == [0, 5, 35]
    for n, (name, tomo) in enumerate(zip(real.names, real.tomo_names, strict=True)):
        assert np.nonzero(~real.visible[n])[0].tolist() == zeros[tomo], name
    n = real.names.index("Unt_083/3")
    batch = real.batch(np.array([n]))
    imgs = batch.images[0].numpy()
    stack_file = REAL / STEM / "Unt_083" / "Unt_083_12.00A_000003.mrcs"
    with mrcfile.open(stack_file, permissive=True) as m:
        assert m.header.mode == 12  # float16 stack
        raw = np.asarray(m.data, dtype=np.float32)
    assert (raw[[0, 5, 35]].std(axis=(1, 2)) < 1e-3).all()  # excluded frames are blank
    for t in range(37):
        if real.visible[n, t]:
            np.testing.assert_array_equal(imgs[t], raw[t])  # frame t, not the t-th visible
            assert imgs[t].std() > 0.05
            assert batch.dose_e_per_A2[0, t] == pytest.approx(tilts["rlnMicrographPreExposure"][t])
            assert batch.defocus_angle_deg[0, t] == pytest.approx(tilts["rlnDefocusAngle"][t],
                                                                  abs=1e-3)
        else:
            assert not imgs[t].any()
    # every visible image of the whole set is a real (non-blank) image
    all_imgs = real.batch(np.arange(40)).images
    assert torch.equal(all_imgs.flatten(2).std(dim=2) > 0.05, torch.as_tensor(real.visible))


def _permute_relion5(folder: Path, rng: np.random.Generator) -> Path:
    """Shuffle particle rows and each tomogram's tilt rows; permute every stack's frames
    and rlnTomoVisibleFrames the same way (frame f of a stack is tilt row f)."""
    tomos = folder / f"{STEM}_tomograms.star"
    parts = folder / f"{STEM}.star"
    tb = starfile.read(tomos, always_dict=True)
    perms = {}
    for name in tb["global"]["rlnTomoName"]:
        perms[name] = rng.permutation(len(tb[name]))
        tb[name] = tb[name].iloc[perms[name]].reset_index(drop=True)
    starfile.write(tb, tomos)
    pb = starfile.read(parts, always_dict=True)
    df = pb["particles"].sample(frac=1.0, random_state=1).reset_index(drop=True)
    vis = []
    for tomo, stack, flags in zip(df["rlnTomoName"], df["rlnImageName"],
                                  df["rlnTomoVisibleFrames"], strict=True):
        perm = perms[tomo]
        with mrcfile.open(folder / stack, mode="r+", permissive=True) as m:
            m.data[:] = np.array(m.data)[perm]
        f = np.array([int(v) for v in flags.strip("[]").split(",")])[perm]
        vis.append("[" + ",".join(str(v) for v in f) + "]")
    df["rlnTomoVisibleFrames"] = vis
    pb["particles"] = df
    starfile.write(pb, parts)
    return folder / OPT.name


def test_real_row_permutation_gives_identical_particles(real, real_copy):
    path = _permute_relion5(real_copy, np.random.default_rng(0))
    shuffled = read_particles(path)
    assert shuffled.names != real.names  # rows really moved
    assert_same(real, shuffled)


def test_real_to_warp_rows_shuffled_and_back(real, tmp_path):
    warp = tmp_path / "warp" / "particles.star"
    write_particles(real, warp, fmt="warp")
    df = starfile.read(warp)
    starfile.write(df.sample(frac=1.0, random_state=2).reset_index(drop=True), warp)
    assert detect_format(warp) == "warp"
    back = read_particles(warp)
    assert back.n_tilts == 37 and back.tilts_per_particle().tolist() == \
        [int(real.tilts_per_particle()[real.names.index(n)]) for n in back.names]
    assert_same(real, back)
    again = write_particles(back, tmp_path / "r5" / "particles.star", fmt="relion5")
    assert_same(real, read_particles(again[-1]))
    no_temp_files(tmp_path)


# ---------------------------------------------------------------------------- round trips
def _with_shifts(p: TiltSeriesParticles, rng: np.random.Generator) -> TiltSeriesParticles:
    """Per-image shifts from a 3D particle origin (representable in every format)."""
    origin = rng.normal(0, 20, size=(p.n_particles, 3))
    table = p.table.copy() if len(p.table) else pd.DataFrame(index=range(p.n_particles))
    for k, a in enumerate("XYZ"):
        table[f"rlnOrigin{a}Angst"] = origin[:, k]
    shift = np.einsum("ntij,nj->nti", p.tilt_rotation, -origin)[..., :2]
    from dataclasses import replace

    return replace(p, shift_A=np.where(p.visible[..., None], shift, 0.0), table=table)


@pytest.mark.parametrize("fmt", ["relion5", "warp"])
def test_simulated_round_trip(sim, tmp_path, fmt):
    p = _with_shifts(sim, np.random.default_rng(1))
    assert (~p.visible).any() and np.abs(p.shift_A).max() > 1
    written = write_particles(p, tmp_path / fmt / "particles.star", fmt=fmt,
                              extra_columns=extra_for(p.names))
    path = written[-1]
    assert detect_format(path) == fmt
    q = read_particles(path)
    assert isinstance(q, TiltSeriesParticles) and q.meta["format"] == fmt
    assert_same(p, q)
    order = [q.names.index(n) for n in p.names]
    check_extra(q.table.iloc[order].reset_index(drop=True), extra_for(p.names))
    np.testing.assert_allclose(q.rotation[order], p.rotation, atol=1e-6)
    no_temp_files(tmp_path)


def test_write_read_write_is_stable(sim, tmp_path):
    first = write_particles(sim, tmp_path / "a" / "particles.star", fmt="relion5")
    q = read_particles(first[-1])
    second = write_particles(q, tmp_path / "b" / "particles.star", fmt="relion5")
    assert_same(sim, read_particles(second[-1]))
    # images already on disk are referenced, not copied
    assert not any(p.suffix == ".mrcs" for p in second)




@pytest.mark.parametrize("fmt,name", [("relion4", "p.star"), ("relion5", "p.star"),
                                      ("stopgap", "motl.star"), ("dynamo", "p.tbl")])
def test_subtomogram_round_trip(subtomos, tmp_path, fmt, name):
    s = subtomos
    path = tmp_path / fmt / name
    write_particles(s, path, fmt=fmt, extra_columns=extra_for(s.names))
    q = read_particles(path)
    assert isinstance(q, SubtomogramParticles)
    assert q.names == s.names and q.tomo_names == s.tomo_names
    np.testing.assert_allclose(q.rotation, s.rotation, atol=1e-6)
    np.testing.assert_allclose(q.position_A, s.position_A, atol=1e-3)
    idx = np.arange(5)
    np.testing.assert_allclose(q.volumes.read(idx), s.volumes.read(idx), atol=1e-6)
    if fmt.startswith("relion"):
        np.testing.assert_allclose(q.weights.read(idx), s.weights.read(idx), atol=1e-6)
        assert q.optics.ctf_premultiplied and q.weight_layout == "rfft"
    check_extra(q.table, extra_for(s.names))
    no_temp_files(tmp_path)


def test_float16_mode12_stack_loads(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float16)
    path = tmp_path / "half.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = 5.0
    with mrcfile.open(path, permissive=True) as m:
        assert m.header.mode == 12
    arr, px = read_mrc(path)
    assert arr.dtype == np.float32 and px == pytest.approx(5.0)
    np.testing.assert_array_equal(arr, data.astype(np.float32))
    src = ImageSource([str(path)], np.zeros(3, np.int64), np.array([2, 0, 1]), 8)
    src.check()
    out = src.read([0, -1, 2])
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out[0].numpy(), data[2].astype(np.float32))
    assert not out[1].any()


def test_atomic_writes_leave_no_temp_files(tmp_path):
    target = tmp_path / "x.mrc"
    write_mrc(target, np.ones((4, 4, 4)), 2.0)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    with pytest.raises(DataError):
        write_mrc(target, np.full((4, 4), np.nan), 2.0)
    assert target.read_bytes() == before
    no_temp_files(tmp_path)


def test_assignments_and_latent_csv(tmp_path):
    names = ["Unt_083/1", "Unt_083/2", "b"]
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    path = write_assignments_csv(tmp_path / "a.csv", names, probabilities=probs,
                                 latent=np.arange(6.0).reshape(3, 2))
    df = pd.read_csv(path)
    assert df["particle"].tolist() == names and df["class"].tolist() == [1, 2, 1]
    np.testing.assert_allclose(df["max_prob"], [0.9, 0.7, 0.5])
    assert list(df.columns) == ["particle", "class", "max_prob", "z0", "z1"]
    lat = pd.read_csv(write_latent_csv(tmp_path / "z.csv", names, np.ones(3)))
    assert list(lat.columns) == ["particle", "z0"]
    with pytest.raises(DataError, match="a2.csv"):
        write_assignments_csv(tmp_path / "a2.csv", names, labels=np.zeros(2))
    no_temp_files(tmp_path)


# ---------------------------------------------------------------------------- RELION 5 variants
def _rot(axis: str, deg: np.ndarray) -> np.ndarray:
    """Right-handed rotations written out by hand (RELION 5 Tomogram::setProjectionMatrix)."""
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    o, z = np.ones_like(c), np.zeros_like(c)
    m = {"x": [[o, z, z], [z, c, -s], [z, s, c]], "y": [[c, z, s], [z, o, z], [-s, z, c]],
         "z": [[c, -s, z], [s, c, z], [z, z, o]]}[axis]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def test_tilt_angles_and_separate_tilt_series_files(real, real_copy):
    """RELION 5 pipeline layout: rlnTomoTiltSeriesStarFile -> per-tilt-series star files
    with rlnTomoXTilt/YTilt/ZRot and shifts instead of projection matrices."""
    tomos = real_copy / f"{STEM}_tomograms.star"
    blocks = starfile.read(tomos, always_dict=True)
    glob = blocks["global"]
    (real_copy / "tilt_series").mkdir()
    rng = np.random.default_rng(4)
    expected = {}
    for name in glob["rlnTomoName"]:
        df = blocks[name].drop(columns=[f"rlnTomoProj{a}" for a in "XYZW"])
        f = len(df)
        ang = {"rlnTomoXTilt": rng.normal(0, 2, f), "rlnTomoYTilt": np.linspace(-50, 58, f),
               "rlnTomoZRot": rng.normal(85, 1, f), "rlnTomoXShiftAngst": rng.normal(0, 30, f),
               "rlnTomoYShiftAngst": rng.normal(0, 30, f)}
        for col, v in ang.items():
            df[col] = v
        expected[name] = (_rot("z", ang["rlnTomoZRot"]) @ _rot("y", ang["rlnTomoYTilt"])
                          @ _rot("x", ang["rlnTomoXTilt"]), ang["rlnTomoYTilt"])
        starfile.write({name: df}, real_copy / "tilt_series" / f"{name}.star")
    glob["rlnTomoTiltSeriesStarFile"] = [f"tilt_series/{n}.star" for n in glob["rlnTomoName"]]
    starfile.write({"global": glob}, tomos)
    q = read_particles(real_copy / OPT.name)
    for n, tomo in enumerate(q.tomo_names):
        rot, tilt = expected[tomo]
        np.testing.assert_allclose(q.tilt_rotation[n], rot, atol=1e-6)
        np.testing.assert_allclose(q.tilt_deg[n], tilt, atol=1e-5)
        i = real.names.index(q.names[n])
        np.testing.assert_allclose(q.dose_e_per_A2[n], real.dose_e_per_A2[i])
        np.testing.assert_array_equal(q.visible[n], real.visible[i])
    # the writer puts the per-tilt rows back inline and the result reads the same
    written = write_particles(q, real_copy / "out" / "particles.star", fmt="relion5")
    assert_same(q, read_particles(written[-1]))
    (real_copy / "tilt_series" / "Unt_050.tomostar.star").unlink()
    with pytest.raises(DataError, match=r"tomograms.star: data_global, "
                       r"rlnTomoTiltSeriesStarFile of Unt_050.tomostar"):
        read_particles(real_copy / OPT.name)


def test_subtomogram_orientation_and_origin_compose(real, real_copy):
    """A = A_subtomo @ A_particle; position -= A_subtomo @ origin; image shift = P (-S o)."""
    from tomohet.io.conventions import matrix_to_relion, relion_to_matrix

    parts = real_copy / f"{STEM}.star"
    blocks = starfile.read(parts, always_dict=True)
    df = blocks["particles"]
    rng = np.random.default_rng(5)
    n = len(df)
    sub = relion_to_matrix(rng.uniform(-180, 180, n), rng.uniform(0, 180, n),
                           rng.uniform(-180, 180, n))
    order = [real.names.index(x) for x in df["rlnTomoParticleName"]]
    a_part = np.swapaxes(sub, 1, 2) @ real.rotation[order]
    ang, sub_ang = matrix_to_relion(a_part), matrix_to_relion(sub)
    origin = rng.normal(0, 15, size=(n, 3))
    for k, (c, s) in enumerate(zip(("Rot", "Tilt", "Psi"), ("X", "Y", "Z"), strict=True)):
        df[f"rlnAngle{c}"] = ang[:, k]
        df[f"rlnTomoSubtomogram{c}"] = sub_ang[:, k]
        df[f"rlnOrigin{s}Angst"] = origin[:, k]
    starfile.write(blocks, parts)
    q = read_particles(real_copy / OPT.name)
    for j, name in enumerate(df["rlnTomoParticleName"]):
        i, m = real.names.index(name), q.names.index(name)
        np.testing.assert_allclose(q.rotation[m], real.rotation[i], atol=1e-6)
        off = sub[j] @ origin[j]
        np.testing.assert_allclose(q.position_A[m], real.position_A[i] - off, atol=1e-6)
        shift = (real.tilt_rotation[i] @ -off)[:, :2]
        np.testing.assert_allclose(q.shift_A[m][q.visible[m]], shift[q.visible[m]], atol=1e-6)
    # and it survives writing (the origin stays one 3D vector per particle)
    written = write_particles(q, real_copy / "out" / "p.star", fmt="relion5")
    assert_same(q, read_particles(written[-1]))


def test_tomodrgn_style_star_dose_from_bfactor_tilt_from_scale(sim, tmp_path):
    """Per-tilt star with only rlnCtfBfactor (-4 x dose) and rlnCtfScalefactor (cos tilt)."""
    from dataclasses import replace

    p = replace(sim, ctf_scale=np.cos(np.deg2rad(sim.tilt_deg)))
    path = tmp_path / "tomodrgn.star"
    write_particles(p, path, fmt="warp")
    df = starfile.read(path)
    drop = [c for c in df.columns if c.startswith(("tomohet", "rlnCentered"))
            or c in ("rlnTomoYTilt", "rlnTomoName", "rlnTomoParticleName")]
    starfile.write(df.drop(columns=drop), path)
    q = read_particles(path)
    assert q.meta["format"] == "warp" and not q.meta["tilt_sign_known"]
    a, b = records(p), records(q)
    for name in p.names:
        np.testing.assert_allclose(b[name]["dose"], a[name]["dose"], atol=1e-6)
        np.testing.assert_allclose(np.sort(b[name]["tilt"]), np.sort(np.abs(a[name]["tilt"])),
                                   atol=1e-3)
        order = np.lexsort((np.abs(a[name]["tilt"]), a[name]["dose"]))
        for key in ("rot", "img", "du"):
            np.testing.assert_allclose(b[name][key], a[name][key][order], atol=1e-2)


def test_star_files_carry_no_timestamp(tmp_path):
    """Same data -> same bytes: starfile's time-stamped header is replaced."""
    from tomohet.io.star import write_star

    path = write_star(tmp_path / "a.star", {"particles": pd.DataFrame({"rlnTomoName": ["t"]})})
    assert path.read_text().splitlines()[0] == "# written by tomohet"

"""``tomohet select`` (issue 16, item 2): select -> re-read round trips for every format,
rows copied unchanged, and clear errors for bad selections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from io_cases import OPT, REAL, assert_same, extra_for
from test_extract import _tomograms, _write_set

from tomohet.analysis.runs import input_record
from tomohet.cli.main import main
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.io import read_particles, write_assignments_csv, write_latent_csv, write_particles
from tomohet.io.star import read_star, write_star

K = 3


def _labels(names: list[str]) -> np.ndarray:
    """0-based classes from the names (not from row positions): sorted name rank mod K."""
    rank = {n: i for i, n in enumerate(sorted(names))}
    return np.array([rank[n] % K for n in names])


def _make_run(folder: Path, data: Path, p) -> Path:
    """A run folder as classify/embed leave it: config.json with the input record,
    assignments.csv (class, max_prob, z0, z1) and latent.csv."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(p.names))
    lab = _labels(p.names)
    prob = rng.dirichlet(np.ones(K), len(lab))
    prob[np.arange(len(lab)), lab] += 1.0
    prob /= prob.sum(1, keepdims=True)
    write_assignments_csv(folder / "assignments.csv", p.names, labels=lab, probabilities=prob)
    z = np.stack([np.linspace(-2, 2, len(lab)), rng.normal(size=len(lab))], 1)
    write_latent_csv(folder / "latent.csv", p.names, z)
    cfg = {"command": "classify ml2d", "config": {"k": K},
           "input": input_record(data, fmt=p.meta.get("format"))}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _output(out: Path) -> Path:
    opt = sorted(out.glob("*_optimisation_set.star"))
    if opt:
        return opt[0]
    files = [f for f in out.iterdir() if f.suffix in (".star", ".tbl")]
    assert len(files) == 1, files
    return files[0]


def _data_sets(kind: str, tmp: Path, sim, subtomos) -> Path:
    """An input particle file of ``kind`` on disk (with other tools' extra columns)."""
    if kind in ("relion5", "warp"):
        return write_particles(sim, tmp / kind / "particles.star", fmt=kind,
                               extra_columns=extra_for(sim.names))[-1]
    if kind == "relion5-unnamed":  # RELION 5 numbers such particles per tomogram
        opt = write_particles(sim, tmp / kind / "particles.star", fmt="relion5")[-1]
        blocks = read_star(tmp / kind / "particles.star")
        blocks["particles"] = blocks["particles"].drop(columns=["rlnTomoParticleName"])
        write_star(tmp / kind / "particles.star", blocks)
        return opt
    if kind == "real-relion5":
        shutil.copytree(REAL, tmp / "real")
        return tmp / "real" / OPT.name
    if kind == "extracted-relion5":
        return _write_set(tmp / "fly", _tomograms(7, 4, edge=False), False)
    fmt, name = {"relion4": ("relion4", "p.star"), "relion5-3d": ("relion5", "p.star"),
                 "stopgap": ("stopgap", "motl.star"), "dynamo": ("dynamo", "p.tbl")}[kind]
    return write_particles(subtomos, tmp / kind / name, fmt=fmt,
                           extra_columns=extra_for(subtomos.names))[-1]


def _same_values(a: pd.Series, b: pd.Series, col: str) -> None:
    """Same numbers (the STAR writer may print 0.0 as 0) or the same strings."""
    x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    if x.notna().all() and y.notna().all():
        np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-9,
                                   err_msg=col)
    else:
        assert a.astype(str).tolist() == b.astype(str).tolist(), col


KINDS = ["relion5", "relion5-unnamed", "warp", "real-relion5", "extracted-relion5",
         "relion4", "relion5-3d", "stopgap", "dynamo"]


@pytest.mark.parametrize("kind", KINDS)
def test_select_round_trip_every_format(kind, tmp_path, sim, subtomos, capsys):
    data = _data_sets(kind, tmp_path, sim, subtomos)
    p = read_particles(data)
    run = _make_run(tmp_path / "run", data, p)
    out = tmp_path / "sel"
    assert main(["select", str(run), "--classes", "2,3", "--out", str(out)]) == 0
    want = [n for n, c in zip(p.names, _labels(p.names), strict=True) if c in (1, 2)]
    assert 0 < len(want) < p.n_particles
    q = read_particles(_output(out))
    assert q.meta["format"] == p.meta["format"]
    assert sorted(q.names) == sorted(want)
    sub = p.subset([p.names.index(n) for n in q.names])
    if isinstance(p, TiltSeriesParticles):
        assert isinstance(q, TiltSeriesParticles)
        assert_same(sub, q)  # poses, CTF, dose, shifts and every image
        np.testing.assert_allclose(q.rotation, sub.rotation, atol=1e-6)
    else:
        assert isinstance(q, SubtomogramParticles)
        np.testing.assert_allclose(q.position_A, sub.position_A, atol=1e-3)
        np.testing.assert_allclose(q.rotation, sub.rotation, atol=1e-6)
        idx = np.arange(q.n_particles)
        np.testing.assert_allclose(q.volumes.read(idx), sub.volumes.read(idx))
        if sub.weights is not None:
            np.testing.assert_allclose(q.weights.read(idx), sub.weights.read(idx))
    # rows copied unchanged: every input column is there with the same values
    for col in sub.table.columns:
        if col not in ("rlnImageName", "rlnCtfImage"):
            _same_values(q.table[col], sub.table[col], col)
    assert "select:" in capsys.readouterr().out


def test_criteria_combine_and_default_out(tmp_path, sim, subtomos):
    data = _data_sets("dynamo", tmp_path, sim, subtomos)
    p = read_particles(data)
    run = _make_run(tmp_path / "run", data, p)
    table = pd.read_csv(run / "assignments.csv", dtype={"particle": str})
    lat = pd.read_csv(run / "latent.csv", dtype={"particle": str})
    ok = (table["class"].isin([1, 2]) & (table["max_prob"] >= 0.4)
          & lat["z0"].between(-1.5, 2.0)).to_numpy()
    assert 0 < ok.sum() < len(ok)
    assert main(["select", str(run), "--classes", "1,2", "--min-prob", "0.4",
                 "--latent-box", "z0:-1.5:2"]) == 0
    outs = list(run.glob("select_*"))
    assert len(outs) == 1
    q = read_particles(_output(outs[0]))
    assert sorted(q.names) == sorted(table["particle"][ok])
    assert (outs[0] / "config.json").exists()


@pytest.mark.parametrize("argv,message", [
    (["--classes", "7"], "class 7 does not exist"),
    (["--cluster", "0,9"], "cluster 0 does not exist"),
    (["--latent-box", "z5:0:1"], "latent dimension z5 does not exist"),
    (["--latent-box", "z0:1"], "is not dim:low:high"),
    (["--min-prob", "1.5"], "selection is empty"),
    ([], "give --classes"),
])
def test_bad_selection_is_one_clear_line(tmp_path, sim, subtomos, capsys, argv, message):
    data = _data_sets("stopgap", tmp_path, sim, subtomos)
    run = _make_run(tmp_path / "run", data, read_particles(data))
    out = tmp_path / "sel"
    assert main(["select", str(run), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_existing_output_needs_force(tmp_path, sim, subtomos, capsys):
    data = _data_sets("relion4", tmp_path, sim, subtomos)
    run = _make_run(tmp_path / "run", data, read_particles(data))
    out = tmp_path / "sel"
    assert main(["select", str(run), "--classes", "1", "--out", str(out)]) == 0
    first = _output(out).read_text()
    assert main(["select", str(run), "--classes", "2", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert _output(out).read_text() == first  # nothing overwritten
    assert main(["select", str(run), "--classes", "2", "--out", str(out), "--force"]) == 0
    assert _output(out).read_text() != first


def test_run_naming_particles_not_in_its_input(tmp_path, sim, subtomos, capsys):
    data = _data_sets("dynamo", tmp_path, sim, subtomos)
    p = read_particles(data)
    run = _make_run(tmp_path / "run", data, p)
    table = pd.read_csv(run / "assignments.csv", dtype={"particle": str})
    table.loc[0, "particle"] = "999"
    table.to_csv(run / "assignments.csv", index=False)
    cls = int(table.loc[0, "class"])
    assert main(["select", str(run), "--classes", str(cls), "--out",
                 str(tmp_path / "sel")]) == 2
    assert "'999'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["relion5", "dynamo"])
def test_select_never_overwrites_its_input(tmp_path, sim, subtomos, capsys, kind):
    data = _data_sets(kind, tmp_path, sim, subtomos)
    run = _make_run(tmp_path / "run", data, read_particles(data))
    before = {f: f.read_bytes() for f in data.parent.iterdir() if f.is_file()}
    assert main(["select", str(run), "--classes", "1", "--out", str(data.parent),
                 "--force"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert {f: f.read_bytes() for f in before} == before


def test_optimisation_set_entries_are_kept(tmp_path, sim, subtomos):
    data = _data_sets("relion5", tmp_path, sim, subtomos)
    (data.parent / "ref_half1.mrc").write_bytes(b"x" * 2048)
    values = dict(read_star(data)[""])
    values.update(rlnTomoReferenceMap1File="ref_half1.mrc", rlnTomoLocalResolution="7.5")
    write_star(data, {"": values})
    run = _make_run(tmp_path / "run", data, read_particles(data))
    out = tmp_path / "deep" / "sel"
    assert main(["select", str(run), "--classes", "1", "--out", str(out)]) == 0
    new = read_star(_output(out))[""]
    assert (out / new["rlnTomoReferenceMap1File"]).resolve() == \
        (data.parent / "ref_half1.mrc").resolve()
    assert str(new["rlnTomoLocalResolution"]) == "7.5"
    assert new["rlnTomoParticlesFile"] == "particles.star"

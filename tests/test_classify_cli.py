"""``tomohet classify``: outputs of ml2d and shc on a small simulated RELION 5 set."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import starfile
from sklearn.metrics import adjusted_rand_score

from tomohet.cli.main import main


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    out = tmp_path_factory.mktemp("sim")
    cfg = get_preset("demo", n_particles=60, n_tomograms=2, box=24, n_tilts=11)
    simulate(cfg, seed=4).write(out)
    return out


@pytest.mark.parametrize("method,extra", [
    ("ml2d", ["--iter", "6", "--anneal-iters", "2"]),
    ("shc", ["--iter", "8", "--anneal-iters", "3", "--runs", "2"]),
])
def test_classify_writes_maps_star_assignments(sim_dir, tmp_path, method, extra):
    out = tmp_path / method
    data = sim_dir / "particles_optimisation_set.star"
    rc = main(["--threads", "1", "classify", method, str(data), "--k", "2", "--out", str(out),
               "--no-progress", *extra])
    assert rc in (0, None)
    for name in ("class_001.mrc", "class_002.mrc", "class_001_half1.mrc",
                 "class_002_half2.mrc", "assignments.csv", "posteriors.csv", "config.json"):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "assignments.csv")
    truth = pd.read_csv(sim_dir / "truth.csv")
    merged = truth.merge(table, left_on="name", right_on="particle")
    assert len(merged) == 60
    assert adjusted_rand_score(merged["state"], merged["class"]) > 0.9
    blocks = starfile.read(out / "particles.star", always_dict=True)
    cols = set().union(*(b.columns for b in blocks.values() if hasattr(b, "columns")))
    assert {"rlnClassNumber", "rlnMaxValueProbDistribution"} <= cols
    cfg = json.loads((out / "config.json").read_text())
    assert "version" in json.dumps(cfg)


def test_map_write_failure_keeps_tables_and_fails(sim_dir, tmp_path, monkeypatch, capsys):
    """A map that cannot be written (e.g. NaN) is skipped and reported: assignments,
    posteriors and the star are already on disk, and the command exits non-zero."""
    import tomohet.io
    from tomohet.data.sources import DataError

    real = tomohet.io.write_mrc

    def refuse_class_2(path, array, *args, **kwargs):
        if "class_002" in str(path):
            raise DataError(f"{path}: refusing to write NaN or inf values")
        return real(path, array, *args, **kwargs)

    monkeypatch.setattr(tomohet.io, "write_mrc", refuse_class_2)
    out = tmp_path / "ml2d"
    rc = main(["--threads", "1", "classify", "ml2d",
               str(sim_dir / "particles_optimisation_set.star"), "--k", "2", "--out",
               str(out), "--no-progress", "--iter", "2", "--anneal-iters", "1"])
    assert rc not in (0, None)
    for name in ("assignments.csv", "posteriors.csv", "particles.star", "class_001.mrc",
                 "class_001_half1.mrc", "iterations.json"):
        assert (out / name).exists(), name
    assert not (out / "class_002.mrc").exists()
    assert len(pd.read_csv(out / "assignments.csv")) == 60
    err = capsys.readouterr().err
    assert "class_002.mrc" in err and "assignments.csv" in err

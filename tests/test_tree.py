"""Hierarchical classification (issue 16, item 3): re-classifying one class of a run
finds a state the first level merged; ``tomohet tree`` draws the runs' tree."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from tomohet.cli.main import main

ML = ["--no-progress", "--iter", "8"]


@pytest.fixture(scope="module")
def two_levels(tmp_path_factory):
    """Ladder preset, 4 states from two removable components (A 30%, B 18% of the mass):
    A+B, A, B, core. Level 1 (K=2) must merge states (it splits on A, merging A+B with A
    and B with core); level 2 (K=2) on the class that merged two states most evenly."""
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    root = tmp_path_factory.mktemp("hier")
    cfg = get_preset("ladder-m30-snr1-n300", box=24, n_tilts=15)
    simulate(cfg, seed=1).write(root / "sim")
    data = root / "sim" / "particles_optimisation_set.star"
    l1 = root / "l1"
    assert main(["--threads", "1", "classify", "ml2d", str(data), "--k", "2", "--out",
                 str(l1), *ML]) == 0
    truth = pd.read_csv(root / "sim" / "truth.csv").set_index("name")
    a1 = pd.read_csv(l1 / "assignments.csv").set_index("particle")
    counts = pd.crosstab(a1["class"], truth.loc[a1.index, "state"])
    # the class that merged two true states most evenly (expected: A+B with A, the larger
    # component A deciding level 1): its second-largest state is the largest
    second = counts.apply(lambda row: np.sort(row.to_numpy())[-2], axis=1)
    with_a = int(second.idxmax())
    l2 = root / "l2"
    assert main(["--threads", "1", "classify", "ml2d", str(l1), "--classes", str(with_a),
                 "--k", "2", "--out", str(l2), *ML]) == 0
    return root, l1, l2, with_a, truth


def test_second_level_separates_a_state_the_first_merged(two_levels):
    root, l1, l2, with_a, truth = two_levels
    a1 = pd.read_csv(l1 / "assignments.csv").set_index("particle")
    inside = a1.index[a1["class"] == with_a]
    counts = truth.loc[inside, "state"].value_counts().sort_values()
    # level 1 merged two states: both are large parts of the one class
    assert counts.iloc[-2] > 0.3 * len(inside), counts
    a2 = pd.read_csv(l2 / "assignments.csv").set_index("particle")
    assert sorted(a2.index) == sorted(inside)  # exactly the particles of that class
    merged = truth.loc[a2.index, "state"].to_numpy()
    ari = adjusted_rand_score(merged, a2["class"].to_numpy())
    assert ari > 0.8, ari
    cfg = json.loads((l2 / "config.json").read_text())
    assert cfg["parent"] == {"run": str(l1.resolve()), "classes": [with_a]}
    assert cfg["input"]["path"] == str((root / "sim" / "particles_optimisation_set.star")
                                       .resolve())
    assert cfg["input"]["format"] == "relion5"


def test_tree_from_parent_links(two_levels, tmp_path, capsys):
    from tomohet.analysis.tree import build_tree

    root, l1, l2, with_a, _ = two_levels
    nodes = build_tree([l2])  # the parent is found from the link
    assert len(nodes) == 1 + 2 + 2
    a1 = pd.read_csv(l1 / "assignments.csv")
    for key, node in nodes.items():
        if node.children:  # populations add up to the node above
            assert sum(nodes[k].n_particles for k in node.children) == node.n_particles
        if key != "input":
            assert node.resolution_A is not None
            assert 2 * 24.0 - 1e-6 <= node.resolution_A <= 24 * 24.0
    assert nodes[f"{l1.resolve()}#{with_a}"].n_particles == int((a1["class"] == with_a).sum())
    assert set(nodes[f"{l1.resolve()}#{with_a}"].children) == {
        f"{l2.resolve()}#1", f"{l2.resolve()}#2"}
    out = tmp_path / "tree"
    assert main(["tree", str(l1), str(l2), "--out", str(out)]) == 0
    page = (out / "tree.html").read_text()
    assert "data:image/png;base64," in page and "Hierarchical classification" in page
    assert (out / "tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "tree.csv")
    assert len(table) == 5 and np.isfinite(table["resolution_A"].iloc[1:]).all()
    # nothing is overwritten without --force
    assert main(["tree", str(l2), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["tree", str(l2), "--out", str(out), "--force"]) == 0


def test_reclassify_bad_input(two_levels, tmp_path, capsys):
    root, l1, _, _, _ = two_levels
    data = root / "sim" / "particles_optimisation_set.star"
    base = ["--threads", "1", "classify", "ml2d"]
    # a class the run does not have
    assert main([*base, str(l1), "--classes", "7", "--k", "2", "--out",
                 str(tmp_path / "x"), *ML]) == 2
    assert "class 7 does not exist" in capsys.readouterr().err
    # an incomplete run folder: no assignments
    broken = tmp_path / "broken"
    shutil.copytree(l1, broken)
    (broken / "assignments.csv").unlink()
    assert main([*base, str(broken), "--classes", "1", "--k", "2", "--out",
                 str(tmp_path / "y"), *ML]) == 2
    err = capsys.readouterr().err
    assert "assignments.csv" in err and "incomplete" in err
    # no config.json
    (broken / "config.json").unlink()
    assert main([*base, str(broken), "--classes", "1", "--k", "2", "--out",
                 str(tmp_path / "z"), *ML]) == 2
    assert "config.json" in capsys.readouterr().err
    # --classes with a particle file, and a run folder without --classes
    assert main([*base, str(data), "--classes", "1", "--k", "2", "--out",
                 str(tmp_path / "w"), *ML]) == 2
    assert "needs a run folder" in capsys.readouterr().err
    assert main([*base, str(l1), "--k", "2", "--out", str(tmp_path / "v"), *ML]) == 2
    assert "--classes" in capsys.readouterr().err

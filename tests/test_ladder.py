"""The small-component ladder: presets whose states differ by a removable surface component
of a known fraction of the mass, and ``tomohet bench --ladder`` (cached, resumable)."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from tomohet.bench import ladder
from tomohet.cli.main import main
from tomohet.sim import build_model, get_preset, list_presets
from tomohet.sim.presets import ladder_name, parse_ladder_name

torch.set_num_threads(1)

TINY = {"box": 24, "n_tilts": 9, "n_tomograms": 2}


def _volumes(name: str, box: int = 24) -> tuple[list[str], np.ndarray, object]:
    cfg = get_preset(name, box=box)
    model = build_model(cfg.structure, cfg.box, cfg.pixel_size_A)
    return model.state_names, model.state_volumes().double().numpy(), model


def _mass(v: np.ndarray) -> float:
    return float(np.abs(v).sum())


def test_ladder_names_parse_and_list():
    assert parse_ladder_name("ladder-m05-snr0.1-n1000") == (2, 0.05, 0.1, 1000)
    assert parse_ladder_name("ladder1-m2.5-snr0.3-n300") == (1, 0.025, 0.3, 300)
    assert parse_ladder_name("discrete-easy") is None
    assert ladder_name(0.05, 0.1, 1000) == "ladder-m05-snr0.1-n1000"
    names = list_presets()
    assert "ladder-m02-snr0.02-n3000" in names and "ladder1-m30-snr0.3-n300" in names
    cfg = get_preset("ladder-m10-snr0.05-n1000")
    assert (cfg.box, cfg.pixel_size_A, cfg.n_particles) == (48, 12.0, 1000)
    assert len(cfg.tilt.angles_deg()) == 41 and cfg.tilt.angles_deg()[[0, -1]].tolist() == [-60, 60]
    quick = get_preset("ladder-m10-snr0.05-n1000", box=32)
    assert quick.box == 32 and quick.pixel_size_A == pytest.approx(18.0)
    with pytest.raises(KeyError):
        get_preset("ladder-m05-snr0.1")


@pytest.mark.parametrize("mass", [0.02, 0.30])
def test_two_component_masses_measured_from_true_volumes(mass):
    names, v, _ = _volumes(ladder_name(mass, 0.1, 300))
    assert names == ["A+B", "A", "B", "core"]
    full, a_only, b_only, core = v
    assert _mass(full - b_only) / _mass(full) == pytest.approx(mass, rel=2e-3)  # component A
    assert _mass(full - a_only) / _mass(full) == pytest.approx(0.6 * mass, rel=2e-3)  # B
    assert _mass(full - core) / _mass(full) == pytest.approx(1.6 * mass, rel=2e-3)
    # removing a component only removes density, and the two are independent (additive)
    assert (full - a_only).min() > -1e-6 and (full - b_only).min() > -1e-6
    np.testing.assert_allclose(full - b_only, a_only - core, atol=1e-5 * full.max())


def test_one_component_family():
    names, v, _ = _volumes("ladder1-m05-snr0.3-n300")
    assert names == ["A", "core"]
    assert _mass(v[0] - v[1]) / _mass(v[0]) == pytest.approx(0.05, rel=2e-3)


def test_states_differ_only_inside_a_compact_surface_region():
    _, v, model = _volumes("ladder-m05-snr0.1-n300", box=32)
    full, a_only, b_only, core = v
    masks = model.component_masks.numpy()
    eps = 1e-6 * full.max()
    for diff, mask in ((full - b_only, masks[0]), (full - a_only, masks[1])):
        support = np.abs(diff) > eps
        assert support.any() and not (support & (mask == 0)).any()
        assert not (np.abs(diff) > eps)[masks.sum(0) == 0].any()
        # compact: one connected blob holds nearly all of it, small against the complex
        strong = diff > 0.05 * diff.max()
        labels, n = ndimage.label(strong)
        pieces = ndimage.sum(diff, labels, range(1, n + 1))
        assert pieces.max() > 0.9 * diff.sum()
        pts = np.argwhere(strong)
        complex_pts = np.argwhere(full > 0.1 * full.max())
        extent = np.linalg.norm(pts - pts.mean(0), axis=1).max()
        assert extent < 0.6 * np.linalg.norm(complex_pts - complex_pts.mean(0), axis=1).max()
        # on the surface: the component borders the solvent around the complex
        outside = ndimage.binary_dilation(strong, iterations=2) & (full < 0.05 * full.max())
        assert outside.any()
    # the components are disjoint and on different sides of the complex
    da, db = full - b_only, full - a_only
    assert not ((da > eps) & (db > eps)).any()
    ca, cb = (np.argwhere(d > eps).mean(0) - 16 for d in (da, db))
    assert float(ca @ cb) < 0


def _run(tmp_path, monkeypatch=None, **kw):
    cells = ladder.ladder_cells([0.05, 0.3], [5.0], [40])
    args = {"seed": 0, "overrides": TINY, "log": None}
    args.update(kw)
    return ladder.run_ladder(tmp_path, "oracle", cells, **args)


def test_bench_ladder_writes_table_heatmaps_and_resumes(tmp_path, monkeypatch):
    df = _run(tmp_path)
    table = pd.read_csv(tmp_path / "ladder.csv")
    assert len(table) == 2 and set(table["method"]) == {"oracle"}
    assert sorted(table["mass"]) == [0.05, 0.3] and set(table["n"]) == {40}
    assert table["ari"].between(0.8, 1.0).all()  # high SNR: the oracle separates the states
    assert (tmp_path / "leaderboard.csv").exists()
    png = mpimg.imread(tmp_path / "ladder_ari.png")
    assert png.ndim == 3 and png.shape[0] > 50 and png.std() > 0
    html = (tmp_path / "report.html").read_text()
    assert 'id="ladder"' in html and 'alt="ladder ARI heat map"' in html
    cached = json.loads((tmp_path / "ladder_cells" / f"{df['cell'][0]}.json").read_text())
    assert cached["results"]["oracle"]["row"]["ari"] == pytest.approx(df["ari"][0])

    def no_simulation(*_a, **_k):
        raise AssertionError("a finished cell was simulated again")

    monkeypatch.setattr(ladder, "simulate_cell", no_simulation)
    again = _run(tmp_path)
    pd.testing.assert_frame_equal(df[["cell", "ari"]], again[["cell", "ari"]])
    # other data settings (seed) invalidate the cache: the cell is simulated again
    with pytest.raises(AssertionError, match="simulated again"):
        _run(tmp_path, seed=1)


def test_bench_ladder_cli_arguments(tmp_path, capsys):
    from tomohet.cli.bench import LADDER_DEFAULTS
    from tomohet.sim import presets

    for key, values in (("mass", presets.LADDER_MASSES), ("snr", presets.LADDER_SNRS),
                        ("n", presets.LADDER_NS)):
        assert [float(v) for v in LADDER_DEFAULTS[key].split(",")] == list(values)
    assert main(["bench", "--ladder", "--preset", "demo", "--out", str(tmp_path)]) == 2
    assert "--ladder replaces" in capsys.readouterr().err
    assert main(["bench", "--ladder", "--ladder-mass", "0.05,x", "--out", str(tmp_path)]) == 2
    assert "--ladder-mass" in capsys.readouterr().err
    assert main(["bench", "--ladder", "--ladder-mass", "1.5", "--out", str(tmp_path)]) == 2


def test_snr_reference_projection_measures_the_signal_before_ctf():
    from tomohet.sim import simulate
    from tomohet.sim.simulate import render_clean

    cfg = get_preset("ladder1-m30-snr0.5-n12", box=16, n_tilts=5, n_tomograms=1)
    assert cfg.snr_reference == "projection"
    sim = simulate(cfg)
    zero = int(np.argmin(np.abs(sim.acquisition.tilt_deg[0])))
    idx = np.arange(12)
    raw = render_clean(sim.model, sim.acquisition, idx,
                       cfg.replace(ctf=False, dose_weighting=False), [zero])[:, 0]
    recorded = render_clean(sim.model, sim.acquisition, idx, cfg, [zero])[:, 0]
    def snr(clean: torch.Tensor) -> float:  # mean per-image variance / noise variance
        return float(clean.double().flatten(1).var(1, unbiased=False).mean()) / sim.sigma0**2

    assert snr(raw) == pytest.approx(0.5, rel=1e-4)
    # the recorded (CTF-filtered) image carries far less signal than the projection
    assert snr(recorded) < 0.5 * 0.3
    image = simulate(cfg.replace(snr_reference="image"))
    assert image.sigma0 < 0.5 * sim.sigma0
    with pytest.raises(ValueError, match="snr_reference"):
        simulate(cfg.replace(snr_reference="box"))


def test_bench_methods_may_name_the_oracle_outside_the_ladder(tmp_path, capsys):
    from tomohet.cli.bench import _without_oracle

    assert _without_oracle("oracle,ml2d", False) == "ml2d"
    assert _without_oracle(" oracle , shc,ml2d", False) == "shc,ml2d"
    assert _without_oracle("oracle", False) == ""
    assert _without_oracle("ml2d", True) == "ml2d" and _without_oracle(None, False) is None
    # the oracle is a row of every run; skipping it while naming it is a contradiction
    assert main(["bench", "--methods", "oracle,ml2d", "--no-oracle", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--no-oracle" in capsys.readouterr().err
    # an unknown name is still refused, naming it
    assert main(["bench", "--methods", "oracle,nosuch", "--out", str(tmp_path / "y")]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_fraction_heatmap_names_the_oracle_and_hatches_cells_it_cannot_separate():
    from tomohet.bench import figures

    rows = []
    for mass, snr, oracle, method in ((0.05, 0.3, 0.9, 0.8), (0.05, 0.05, 0.2, 0.1),
                                      (0.1, 0.3, 1.0, 1.0)):
        rows.append({"method": "oracle", "mass": mass, "snr": snr, "n": 300, "ari": oracle})
        rows.append({"method": "ml2d", "mass": mass, "snr": snr, "n": 300, "ari": method,
                     "ari_frac_oracle": method / oracle})
    rows.append({"method": "oracle", "mass": 0.05, "snr": 0.3, "n": 1000, "ari": 0.5})
    df = pd.DataFrame(rows)
    grid = figures._cell_grid(df, "oracle", 300, "ari", [0.05, 0.1], [0.3, 0.05])
    np.testing.assert_allclose(grid, [[0.9, 0.2], [1.0, np.nan]])  # this N's oracle only
    assert np.isnan(figures._cell_grid(df, "oracle", 3000, "ari", [0.05], [0.3, 0.05])).all()
    labels: list[str] = []
    hatched: list[tuple[float, float]] = []
    real_text = figures.plt.Axes.text
    real_patch = figures.plt.Axes.add_patch

    def text(ax, x, y, s, *a, **k):
        labels.append(s)
        return real_text(ax, x, y, s, *a, **k)

    def add_patch(ax, p):
        hatched.append(p.get_xy())
        return real_patch(ax, p)

    mp = pytest.MonkeyPatch()
    mp.setattr(figures.plt.Axes, "text", text)
    mp.setattr(figures.plt.Axes, "add_patch", add_patch)
    try:
        png = figures.ladder_heatmaps(df, "ari_frac_oracle")
        assert png
        assert sorted(labels) == ["0.50\nof 0.20", "0.89\nof 0.90", "1.00\nof 1.00"]
        assert hatched == [(0.5, -0.5)]  # the SNR 0.05 column of the 5% row only
        labels.clear()
        figures.ladder_heatmaps(df, "ari")  # plain ARI maps: values only, no hatching
        assert "0.20" in labels and not any("of" in s for s in labels)
        assert len(hatched) == 1
    finally:
        mp.undo()

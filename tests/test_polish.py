"""Issue 16, item 5: report and command-line polish (leaderboard layout, explained
variance, progress bars in logs, ETA, the demo's kept outputs and report sections)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from functools import partialmethod
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest


# ------------------------------------------------------------------ explained variance
def test_explained_variance_of_every_pc_matches_the_construction(capsys):
    """A 4-D latent built with known variances along orthogonal directions: the printed
    shares are var_i / sum(var) for every PC, none shown as 0% or 100%."""
    from tomohet.analysis.latent import pca
    from tomohet.cli.analyze import explained_line, percent

    rng = np.random.default_rng(0)
    sd = np.array([10.0, 3.0, 0.5, 0.05])
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    x = rng.normal(size=(20000, 4))
    x = (x - x.mean(0)) / x.std(0)
    x = np.linalg.qr(x)[0] * np.sqrt(len(x))  # exactly uncorrelated unit columns
    z = (x * sd) @ q.T + 5.0
    expected = sd**2 / (sd**2).sum()
    got = pca(z, 4).explained
    assert np.allclose(got, expected, rtol=1e-6)
    line = explained_line(got)
    shares = [float(v) for v in re.findall(r"PC\d ([0-9.]+)%", line)]
    assert len(shares) == 4
    assert np.allclose(shares, 100 * expected, rtol=0.05)
    assert shares[-1] > 0 and shares[0] < 100  # 0.0024%, 91.7%: never 0% / 100%
    assert percent(0.0031) == "0.31%" and percent(0.9996) == "99.96%"
    assert percent(0.25) == "25%" and percent(1.0) == "100%" and percent(0.0) == "0%"


# ------------------------------------------------------------------ progress and ETA
class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_tqdm(monkeypatch):
    import tqdm.std

    saved = tqdm.std.tqdm.__dict__["__init__"]
    monkeypatch.setenv("TQDM_MININTERVAL", "0.1")  # tqdm's default; restored afterwards
    # tqdm's own defaults, whatever an earlier in-process ``main()`` set
    func = saved.func if isinstance(saved, partialmethod) else saved
    kw = {k: v for k, v in getattr(saved, "keywords", {}).items() if k != "mininterval"}
    tqdm.std.tqdm.__init__ = partialmethod(func, **kw)  # type: ignore[method-assign]
    yield
    tqdm.std.tqdm.__init__ = saved  # type: ignore[method-assign]


def _lines_written(stream: io.StringIO, n: int = 2000) -> int:
    from tqdm.auto import tqdm

    bar = tqdm(total=n, file=stream, desc="work")
    for _ in range(n):
        bar.update(1)
    bar.close()
    return len([s for s in re.split(r"[\r\n]", stream.getvalue()) if s.strip()])


def test_progress_bars_do_not_flood_logs(restore_tqdm, monkeypatch):
    import time

    from tomohet.cli.common import LOG_MININTERVAL_S, quiet_progress_when_logging

    # a clock that moves 0.2 s per call: 2000 updates span minutes of "time"
    clock = [0.0]

    def fake_time() -> float:
        clock[0] += 0.2
        return clock[0]

    monkeypatch.setattr(time, "time", fake_time)
    import tqdm.std

    monkeypatch.setattr(tqdm.std, "time", fake_time)
    loud = _lines_written(_Log())
    assert quiet_progress_when_logging(_Tty()) is False  # a terminal: unchanged
    assert _lines_written(_Log()) == loud
    assert quiet_progress_when_logging(_Log()) is True
    clock[0] = 0.0
    quiet = _lines_written(_Log())
    span = 2000 * 0.2 * 3  # generous upper bound of the fake time the bar saw
    assert quiet <= span / LOG_MININTERVAL_S + 3 < loud, (quiet, loud)
    assert loud > 500  # without: a refresh every 0.1 s of (fake) time
    from tqdm.auto import tqdm

    bar = tqdm(total=1, file=_Log(), mininterval=0.5)  # an explicit value is kept
    assert bar.mininterval == 0.5
    bar.close()


def test_eta_lines(capsys, monkeypatch):
    from tomohet.cli import common

    t = [100.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: t[0])
    eta = common.Eta("demo", 4)
    t[0] = 130.0
    msg = eta.step("ml2d")
    assert "1/4 done (ml2d)" in msg and "30s elapsed" in msg and "ETA 1m30s" in msg
    t[0] = 220.0
    eta.step()
    eta.step()
    assert "ETA 40s" in capsys.readouterr().out.splitlines()[-1]
    assert "ETA" not in eta.step()  # the last step has none
    assert common.format_seconds(3725) == "1h02m"


def test_bench_eta_lines_go_to_the_runner_log(monkeypatch):
    from tomohet.bench import progress

    t = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: t[0])
    lines: list[str] = []
    eta = progress.Eta("ladder", 3, stream=progress.SayStream(lines.append))
    t[0] = 60.0
    eta.step("cell-a")
    t[0] = 90.0
    eta.step("cell-b")
    assert lines == ["[ladder] 1/3 done (cell-a), 1m00s elapsed, ETA 2m00s",
                     "[ladder] 2/3 done (cell-b), 1m30s elapsed, ETA 45s"]


# ------------------------------------------------------------------ leaderboard layout
def test_leaderboard_fits_the_page_and_keeps_every_column():
    from tomohet.bench.report import _table

    cols = ["method", "dataset", "dataset_kind", "method_kind", "status", "ari", "nmi",
            "accuracy", "pop_err_mean", "pop_err_max", "neigh_sim", "fsc_auc", "fsc_res_A",
            "ari_source", "ari_frac_oracle", "nmi_frac_oracle", "fsc_auc_frac_oracle",
            "wall_s", "peak_mem_MB", "py_peak_MB", "rss_max_MB", "error", "warning"]
    df = pd.DataFrame([{c: (0.5 if c not in ("method", "dataset", "status", "error",
                                              "warning", "ari_source", "dataset_kind",
                                              "method_kind") else "x") for c in cols}
                       for _ in range(3)])
    df["status"] = ["ok", "ok", "error"]
    text = _table(df)
    main, _, details = text.partition("<details>")
    assert details, "the rest of the columns open on demand"
    head = re.findall(r"<tr>(.*?)</tr>", main)[1]
    assert len(re.findall("<th>", head)) <= 14  # fits a page
    assert re.search(r'<th colspan="\d">discrete</th>', main)
    shown = set(re.findall(r"<th>([^<]+)</th>", text))
    from tomohet.bench.report import _label

    assert {_label(c) for c in cols} <= shown  # nothing lost


# ------------------------------------------------------------------ report sections
def _fake_run(folder: Path, names: list[str], classes: np.ndarray, parent=None) -> None:
    folder.mkdir(parents=True)
    cfg = {"command": "classify ml2d", "input": {"path": "/nonexistent/p.star"}}
    if parent:
        cfg["parent"] = parent
    (folder / "config.json").write_text(json.dumps(cfg))
    pd.DataFrame({"particle": names, "class": classes}).to_csv(folder / "assignments.csv",
                                                               index=False)
    rng = np.random.default_rng(len(names))
    for c in np.unique(classes):
        base = rng.normal(size=(16, 16, 16)).astype(np.float32)
        for suffix, noise in (("", 0.0), ("_half1", 0.3), ("_half2", 0.3)):
            with mrcfile.new(folder / f"class_{c:03d}{suffix}.mrc") as m:
                m.set_data(base + noise * rng.normal(size=base.shape).astype(np.float32))
                m.voxel_size = 10.0


def test_tree_counts_and_report_sections_render(tmp_path):
    """The tree of two fake levels (populations add up), and a report with the tree and
    map-back sections appended loads every image in headless Chromium."""
    from tomohet.analysis.mapback import overview_png
    from tomohet.analysis.tree import build_tree, draw_tree, node_table
    from tomohet.bench.report import (
        append_sections,
        mapback_section,
        render_page,
        tree_section,
    )

    names = [f"t/{i}" for i in range(30)]
    _fake_run(tmp_path / "a", names, np.array([1] * 12 + [2] * 18))
    _fake_run(tmp_path / "b", names[12:], np.array([1] * 5 + [2] * 13),
              parent={"run": str(tmp_path / "a"), "classes": [2]})
    nodes = build_tree([tmp_path / "b"])
    table = node_table(nodes)
    assert list(table["particles"]) == [30, 12, 18, 5, 13]
    assert np.allclose(table["fraction_of_parent"], [1, 0.4, 0.6, 5 / 18, 13 / 18], atol=1e-3)
    assert (table["resolution_A"].iloc[1:] > 0).all()
    png = draw_tree(nodes)
    rng = np.random.default_rng(1)
    pics = [(f"TS_{k}", overview_png(rng.uniform(0, 1000, (20, 3)), np.array([1e3] * 3),
                                     rng.integers(1, 3, 20), True, f"TS_{k}"))
            for k in range(2)]
    page = tmp_path / "report.html"
    page.write_text(render_page("tomohet benchmark", ["<p>leaderboard</p>"]))
    append_sections(page, [tree_section(png, table), mapback_section(pics)])
    html = page.read_text()
    assert html.index("Hierarchical classification") < html.index("</body>")
    assert html.count("<img") == 3
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        pytest.skip("chromium not installed")
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.setAttribute('data-ok',i.filter(x=>x.naturalWidth>0).length+'/'"
             "+i.length);});</script></body>")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html.replace("</body>", probe))
    out = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()],
        capture_output=True, text=True, timeout=60)
    m = re.search(r'data-ok="(\d+)/(\d+)"', out.stdout)
    assert m, out.stderr[-2000:]
    assert m.group(1) == m.group(2) == "3"


def test_bench_keeps_method_outputs(tmp_path):
    """``run_bench(keep_outputs=True)`` (used by ``tomohet demo``) leaves each method's own
    folder: maps, star, assignments."""
    from synthetic import make_tilt_set

    from tomohet.bench.datasets import BenchDataset
    from tomohet.bench.runner import run_bench

    particles, labels, vols = make_tilt_set(n=40, box=16, n_tilts=7, snr=1.0, seed=2)
    truth = pd.DataFrame({"name": particles.names, "state": labels})
    ds = BenchDataset(name="tiny", particles=particles, truth=truth, state_volumes=vols)
    run_bench([ds], tmp_path, methods="ml2d", oracle=False, report=False, log=None,
              keep_outputs=True, params={"ml2d": {"n_iter": 2, "n_restarts": 1,
                                                  "progress": False}})
    out = tmp_path / "ml2d"
    for name in ("assignments.csv", "class_001.mrc", "class_002_half1.mrc",
                 "posteriors.csv", "summary.json"):
        assert (out / name).exists(), name
    assert len(pd.read_csv(out / "assignments.csv")) == 40
    assert list((out).glob("*.star")), "the star with class columns"

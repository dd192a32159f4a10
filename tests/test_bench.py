"""Oracle, runner, report and ``tomohet bench`` / ``tomohet evaluate`` end to end.

A small stand-in simulator (``bench_standins.py``: discrete blobs or a blob moving along
a coordinate, projected with the shared forward model) keeps these tests independent of
``tomohet.sim``; the real simulator is tested where named.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from bench_standins import DummyBroken, DummyKMeans, DummyLatent, make_dataset

from tomohet.methods import REGISTRY

torch.set_num_threads(1)

DUMMIES = "dummy_kmeans,dummy_latent,dummy_broken"


@pytest.fixture
def dummies(monkeypatch):
    for cls in (DummyKMeans, DummyLatent, DummyBroken):
        monkeypatch.setitem(REGISTRY, cls.name, cls)


@pytest.fixture
def io_atomic():
    """The real ``tomohet.io.atomic`` (used by ``stamp_config``): no stand-in."""
    import tomohet.io.atomic  # noqa: F401


@pytest.fixture(scope="module")
def discrete_ds():
    return make_dataset(n=80, snr=0.05, seed=0)


@pytest.fixture(scope="module")
def continuous_ds():
    return make_dataset(n=80, snr=0.05, kind="continuous", seed=1)


# ----------------------------------------------------------------- oracle
def test_oracle_recovers_states_at_high_snr(discrete_ds):
    from tomohet.bench.oracle import run_oracle
    from tomohet.metrics import ari

    res = run_oracle(discrete_ds)
    assert res.posteriors.shape == (80, 3)
    np.testing.assert_allclose(res.posteriors.sum(1), 1.0, atol=1e-9)
    assert ari(discrete_ds.states, res.labels) > 0.9


def test_oracle_degrades_at_low_snr_and_small_batches():
    from tomohet.bench.oracle import run_oracle
    from tomohet.metrics import ari

    ds = make_dataset(n=80, snr=0.002, seed=2)
    small = run_oracle(ds, memory_MB=0.01, projector_MB=0.1)  # 1 particle, 1 volume at a time
    np.testing.assert_allclose(small.posteriors, run_oracle(ds).posteriors, atol=1e-6)
    assert ari(ds.states, small.labels) < 0.9
    # the oracle itself works: the same particles at a usable SNR are classified, and at
    # the low SNR it still beats chance (1/3) with posteriors that predict its accuracy
    clear = make_dataset(n=80, snr=0.05, seed=2)
    assert np.array_equal(clear.states, ds.states)
    assert ari(clear.states, run_oracle(clear).labels) > 0.9
    acc = float((small.labels == ds.states).mean())
    assert acc > 0.45
    assert abs(float(small.posteriors.max(1).mean()) - acc) < 0.15


def test_oracle_continuous_latent(continuous_ds):
    from tomohet.bench.oracle import run_oracle
    from tomohet.metrics import rank_correlation

    res = run_oracle(continuous_ds, n_grid=8)
    assert res.grid_coords.shape == (8, 1) and res.coords.shape == (80, 1)
    assert rank_correlation(res.latent(), continuous_ds.coords[:, 0]) > 0.9


def test_oracle_on_simulator_data():
    from tomohet.bench.oracle import run_oracle
    from tomohet.bench.presets import simulate_presets
    from tomohet.metrics import ari

    ds = simulate_presets(["demo"], seed=0, quick=True)[0]
    assert ds.n_states >= 2
    res = run_oracle(ds)
    assert ari(ds.states, res.labels) > 0.9


# ----------------------------------------------------------------- runner + report
def _release_free_memory() -> None:
    """Collect garbage and hand glibc's free heap back to the OS, so a new allocation
    gets fresh pages and adds to the resident size whatever ran before."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def test_measure_sees_torch_and_numpy_memory():
    """A 128 MB torch tensor (well above glibc's largest mmap threshold, 32 MB, so never
    carved out of previously freed heap) held to the end of the block, and a 20 MB numpy
    array freed inside it: the RSS growth must show the tensor, tracemalloc the array."""
    import gc
    import time

    from tomohet.bench.memory import measure

    _release_free_memory()
    gc.disable()  # no collection of earlier garbage inside the block (it lowers the RSS)
    try:
        with measure() as st:
            a = torch.ones(128 * 2**20 // 4)  # written: every page resident
            b = np.ones(20 * 2**20 // 8)  # traced by tracemalloc
            time.sleep(0.1)
            del b
    finally:
        gc.enable()
    assert float(a[-1]) == 1.0
    del a
    assert st["py_peak_MB"] > 15
    if Path("/proc/self/statm").exists():
        assert st["rss_growth_MB"] > 0.75 * 128, st
    assert st["peak_mem_MB"] >= st["py_peak_MB"] and st["wall_s"] >= 0.1


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_rss_sampler_sees_memory_freed_before_the_end():
    """The sampler's peak catches a tensor freed before the block ends (waits for a
    sample instead of assuming one within a fixed sleep)."""
    import gc
    import time

    from tomohet.bench.memory import _RssSampler

    _release_free_memory()
    gc.disable()
    try:
        sampler = _RssSampler(interval=0.01)
        sampler.start()
        a = torch.ones(128 * 2**20 // 4)
        t0 = time.perf_counter()
        while sampler.peak_MB - (sampler.start_MB or 0.0) < 0.75 * 128:
            if time.perf_counter() - t0 > 20:
                break
            time.sleep(0.01)
        del a
    finally:
        gc.enable()
    _release_free_memory()
    assert sampler.finish() > 0.75 * 128


def _check_report(path: Path) -> list[str]:
    """Every <img> is an inline, decodable, non-blank PNG inside a <figure>; no external
    resources. -> the alt texts."""
    text = path.read_text()
    assert not re.search(r"<(script|link|iframe)\b", text)
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    imgs = re.findall(r'<figure><img alt="([^"]+)" src="data:image/png;base64,([^"]+)">'
                      r"<figcaption>[^<]+</figcaption></figure>", text)
    assert len(imgs) == text.count("<img")
    for alt, b64 in imgs:
        arr = mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
        assert arr.shape[0] > 20 and arr.shape[1] > 20, alt
        assert float(arr[..., :3].std()) > 0.01, f"blank image: {alt}"
    return [a for a, _ in imgs]


def test_run_bench_writes_leaderboard_and_report(tmp_path, dummies, discrete_ds,
                                                 continuous_ds):
    from tomohet.bench.runner import run_bench

    df = run_bench([discrete_ds, continuous_ds], tmp_path, methods=DUMMIES, seed=0, log=None)
    assert len(df) == 8
    assert set(df["method"]) == {"oracle", "dummy_kmeans", "dummy_latent", "dummy_broken"}
    by = df.set_index(["dataset", "method"])
    assert by.loc[("standin_discrete", "oracle"), "ari"] > 0.9
    assert by.loc[("standin_discrete", "oracle"), "fsc_auc"] > 0.99
    assert by.loc[("standin_continuous", "oracle"), "rank_corr"] > 0.9
    assert "deliberately broken" in by.loc[("standin_discrete", "dummy_broken"), "error"]
    row = by.loc[("standin_discrete", "dummy_kmeans")]
    assert row["status"] == "ok" and abs(row["fsc_auc"]) < 0.2
    assert row["ari_frac_oracle"] == pytest.approx(row["ari"] / by.loc[
        ("standin_discrete", "oracle"), "ari"])
    lat = by.loc[("standin_discrete", "dummy_latent")]
    assert lat["ari_source"] == "kmeans" and abs(lat["ari"]) < 0.2
    for col in ("wall_s", "peak_mem_MB", "neigh_sim", "rank_corr", "pop_err_mean"):
        assert col in df.columns
    saved = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(saved.columns) == list(df.columns)
    js = json.loads((tmp_path / "leaderboard.json").read_text())
    assert len(js["rows"]) == 8 and js["meta"]["seed"] == 0
    alts = _check_report(tmp_path / "report.html")
    for kind in ("latent embedding", "confusion matrix", "population bars", "central slices",
                 "FSC curves", "tomogram map"):
        assert any(kind in a for a in alts), kind


@pytest.mark.skipif(shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
                    reason="chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path, dummies, discrete_ds):
    from tomohet.bench.runner import run_bench

    run_bench([discrete_ds], tmp_path, methods="dummy_kmeans", log=None)
    html = (tmp_path / "report.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.setAttribute('data-ok',i.filter(x=>x.naturalWidth>0).length+'/'"
             "+i.length);});</script></body>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe))
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    out = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60)
    m = re.search(r'data-ok="(\d+)/(\d+)"', out.stdout)
    assert m, out.stderr[-2000:]
    assert int(m.group(1)) == int(m.group(2)) > 0


# ----------------------------------------------------------------- CLI
def test_cli_bench_end_to_end(tmp_path, dummies, io_atomic):
    """``tomohet bench --preset demo --quick`` with the real simulator."""
    from tomohet.cli.main import main

    out = tmp_path / "bench"
    rc = main(["bench", "--preset", "demo", "--quick", "--methods", "dummy_kmeans,dummy_broken",
               "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out / "leaderboard.csv")
    assert set(df["method"]) == {"oracle", "dummy_kmeans", "dummy_broken"}
    assert (out / "leaderboard.json").exists()
    _check_report(out / "report.html")
    assert main(["bench", "--methods", "no_such_method", "--out", str(out)]) == 2


def test_cli_bench_from_simulated_folder(tmp_path, dummies, io_atomic):
    """``tomohet bench --data DIR`` on a folder written by ``SimulatedDataset.write``."""
    from tomohet.cli.main import main
    from tomohet.sim import get_preset, simulate

    sim = simulate(get_preset("continuous", n_particles=60, box=16, n_tilts=9), seed=0)
    sim.write(tmp_path / "sim", formats=("relion5",))
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(tmp_path / "sim"), "--methods", "dummy_latent",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert df.loc["oracle", "status"] == "ok" and df.loc["oracle", "rank_corr"] > 0.8
    assert df.loc["dummy_latent", "rank_corr"] < 0.5


def test_cli_evaluate(tmp_path, capsys, io_atomic):
    from tomohet.cli.main import main

    truth = pd.DataFrame({"particle": [f"t/{i}" for i in range(12)],
                          "state": [0] * 6 + [1] * 6, "c0": np.linspace(0, 1, 12)})
    truth.to_csv(tmp_path / "truth.csv", index=False)
    pred = pd.DataFrame({"particle": [f"t/{i}" for i in range(2, 12)] + ["x/1"],
                         "class": [7] * 4 + [3] * 6 + [3], "z0": np.r_[np.linspace(0, 1, 10), 5]})
    pred.to_csv(tmp_path / "pred.csv", index=False)
    rc = main(["evaluate", "--truth", str(tmp_path / "truth.csv"), "--pred",
               str(tmp_path / "pred.csv"), "--out", str(tmp_path / "scores.json")])
    assert rc == 0
    res = json.loads((tmp_path / "scores.json").read_text())
    assert res["n_matched"] == 10 and res["unmatched_truth"] == 2
    assert res["unmatched_pred_examples"] == ["x/1"]
    assert res["scores"]["ari"] == pytest.approx(1.0)
    assert res["scores"]["rank_corr"] == pytest.approx(1.0)
    assert res["confusion_matrix"] == [[0, 4], [6, 0]]
    assert "unmatched" in capsys.readouterr().out
    star = tmp_path / "run_data.star"
    star.write_text("data_particles\n\nloop_\n_rlnTomoParticleName #1\n_rlnClassNumber #2\n"
                    + "".join(f"t/{i} {1 + (i >= 6)}\n" for i in range(12)))
    assert main(["evaluate", "--truth", str(tmp_path / "truth.csv"), "--pred", str(star)]) == 0
    assert "ari" in capsys.readouterr().out
    # the simulator's layout: particle = index, name = particle name; latent only
    sim_truth = truth.rename(columns={"particle": "name"}).assign(particle=range(12))
    sim_truth.to_csv(tmp_path / "sim_truth.csv", index=False)
    lat = pd.DataFrame({"particle": truth["particle"], "z0": truth["state"] * 5.0,
                        "z1": np.r_[np.linspace(0, 1, 6), np.linspace(0, 1, 6)]})
    lat.to_csv(tmp_path / "latent.csv", index=False)
    assert main(["evaluate", "--truth", str(tmp_path / "sim_truth.csv"), "--pred",
                 str(tmp_path / "latent.csv"), "--out", str(tmp_path / "s2.json")]) == 0
    res2 = json.loads((tmp_path / "s2.json").read_text())
    assert res2["n_matched"] == 12 and res2["scores"]["ari_source"] == "kmeans"
    assert res2["scores"]["ari"] == pytest.approx(1.0)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"particle": ["q"], "class": [0]}).to_csv(bad, index=False)
    assert main(["evaluate", "--truth", str(tmp_path / "truth.csv"), "--pred", str(bad)]) == 2
    assert "no particle names match" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("TOMOHET_BENCH_ALL"),
                    reason="set TOMOHET_BENCH_ALL=1 to bench every registered method")
def test_cli_bench_all_registered_methods(tmp_path, io_atomic):
    from tomohet.cli.main import main

    assert main(["bench", "--preset", "demo", "--quick", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "leaderboard.csv")
    assert (df["status"] == "ok").all(), df[["method", "error"]]
    assert df.set_index("method").loc["oracle", "ari"] > 0.9

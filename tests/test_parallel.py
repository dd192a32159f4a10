"""torch.distributed scale-out (:mod:`tomohet.parallel`): 2 gloo ranks on CPU, spawned here,
give the result of 1 rank (ml2d, shc, wmdpca, vae), a rank that dies stops the others
with a clear error, and the reductions are checked against sums computed directly."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*latent collapse:RuntimeWarning")

N, BOX, TILTS = 48, 16, 9
VAE = {"zdim": 2, "enc_dim": 16, "dec_dim": 16, "dec_layers": 2, "batch_size": 16,
       "n_epochs": 2, "n_tilts": 5, "beta_warmup": 0, "progress": False, "random_state": 3}


def _data():
    particles, labels, _ = make_tilt_set(n=N, box=BOX, n_tilts=TILTS, snr=0.3, seed=5)
    return particles, labels


def _fit_all(out: Path) -> None:
    """Fit every method on the shared small set; rank 0 writes the results as .npy."""
    from tomohet.methods.linear import PPCA2D, WMDPCA
    from tomohet.methods.ml import ML2D
    from tomohet.methods.shc import SHC
    from tomohet.methods.vae import TiltVAEMethod

    particles, _ = _data()
    res = {}
    ml = ML2D(n_classes=2, n_iter=4, min_iter=4, batch_size=8, random_state=0,
              progress=False, checkpoint_dir=str(out / f"ml_ckpt_{parallel.world()}"))
    ml.fit(particles)
    res["ml2d_post"] = ml.predict_proba()
    res["ml2d_vol"] = ml.class_volumes_.numpy()
    if parallel.world() > 1:  # stopped after 2 iterations, then resumed to 4 by all ranks
        part = str(out / "ml_resume")
        ML2D(n_classes=2, n_iter=2, min_iter=4, batch_size=8, random_state=0,
             progress=False, checkpoint_dir=part).fit(particles)
        resumed = ML2D(n_classes=2, n_iter=4, min_iter=4, batch_size=8, random_state=0,
                       progress=False, checkpoint_dir=part).fit(particles)
        res["ml2d_resumed_post"] = resumed.predict_proba()
        _check_reductions(out)
    shc = SHC(n_classes=2, n_iter=4, n_runs=1, batch_size=8, random_state=1, progress=False)
    res["shc_labels"] = shc.fit(particles).predict()
    block, parallel.ROW_BLOCK = parallel.ROW_BLOCK, 8  # several row blocks per rank
    try:
        res["wmdpca"] = WMDPCA(n_components=2, cluster=None, progress=False,
                               random_state=0).fit(particles).transform()
        res["ppca2d"] = PPCA2D(n_components=2, n_iter=3, batch_size=8, cluster=None,
                               progress=False, random_state=0).fit(particles).transform()
    finally:
        parallel.ROW_BLOCK = block
    res["vae"] = TiltVAEMethod(**VAE).fit(particles).transform()
    if parallel.is_main():
        for key, value in res.items():
            np.save(out / f"{key}_{parallel.world()}.npy", np.asarray(value))


def _check_reductions(out: Path) -> None:
    """Sums over ranks against values computed here; this rank's rows and blocks."""
    r = parallel.rank()
    x = torch.full((3,), 0.1 * (r + 1), dtype=torch.float32)
    c = torch.tensor([1 + 2j, 3 - 1j]) * (r + 1)
    a = np.arange(4, dtype=np.float64) * (r + 1)
    i = torch.tensor([r, 10], dtype=torch.int64)
    nc = (torch.arange(6.0).reshape(2, 3) * (r + 1)).T  # not contiguous
    chunk, parallel.REDUCE_CHUNK = parallel.REDUCE_CHUNK, 2  # several messages per tensor
    try:
        parallel.all_reduce_sum([x, c, a, i, nc])
    finally:
        parallel.REDUCE_CHUNK = chunk
    if parallel.is_main():
        np.save(out / "red_nc.npy", nc.numpy())
        np.save(out / "red_x.npy", x.numpy())
        np.save(out / "red_c.npy", c.numpy())
        np.save(out / "red_a.npy", a)
        np.save(out / "red_i.npy", i.numpy())
    b = torch.tensor([1.0 + r, 2.0 * r]) + 1j * r  # rank 0's values everywhere
    parallel.broadcast([b])
    np.save(out / f"red_bcast_{r}.npy", b.numpy())
    np.save(out / f"red_rows_{r}.npy", parallel.owned_rows(10, block=3))
    np.save(out / f"red_shard_{r}.npy", np.asarray(parallel.shard(list(range(5)))))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, np.ndarray | Path]:
    out = tmp_path_factory.mktemp("parallel")
    t0 = time.perf_counter()
    parallel.spawn(as_rank, 2, (_fit_all, out), timeout_s=120)
    t_two = time.perf_counter() - t0
    _fit_all(out)  # one rank, in this process
    got: dict[str, np.ndarray | Path] = {p.stem: np.load(p) for p in out.glob("*.npy")}
    got["_seconds_two_ranks"] = np.array(t_two)
    got["_dir"] = out
    return got


def test_ml2d_two_ranks_equal_one(results):
    one, two = results["ml2d_post_1"], results["ml2d_post_2"]
    np.testing.assert_array_equal(one.argmax(1), two.argmax(1))
    np.testing.assert_allclose(two, one, atol=1e-4)
    # the volumes are reduced sums: the same maps within float32 rounding
    vol1, vol2 = results["ml2d_vol_1"], results["ml2d_vol_2"]
    assert np.abs(vol2 - vol1).max() <= 1e-3 * np.abs(vol1).max()


def test_shc_two_ranks_same_assignment(results):
    np.testing.assert_array_equal(results["shc_labels_1"], results["shc_labels_2"])


def test_wmdpca_two_ranks_equal_one(results):
    one, two = results["wmdpca_1"], results["wmdpca_2"]
    scale = np.abs(one).max()
    np.testing.assert_allclose(two, one, atol=1e-4 * scale)


def test_ppca2d_two_ranks_equal_one(results):
    one, two = results["ppca2d_1"], results["ppca2d_2"]
    np.testing.assert_allclose(two, one, atol=1e-4 * np.abs(one).max())


def test_vae_two_ranks_within_training_noise(results):
    """Each global batch is split over the ranks and the gradients summed, so 2 ranks
    train the 1-rank model up to float rounding; a different seed is the noise scale."""
    one, two = results["vae_1"], results["vae_2"]
    diff = np.abs(two - one).max()
    assert diff < 1e-3 * max(1.0, np.abs(one).max())


def test_checkpoint_written_by_rank_zero(results):
    """The 2-rank run's checkpoint is rank 0's: complete, with the 2-rank posteriors."""
    from tomohet.methods.em_state import EMState

    folder = results["_dir"]
    assert isinstance(folder, Path)
    for world in (1, 2):
        files = sorted(p.name for p in (folder / f"ml_ckpt_{world}").iterdir())
        assert files == ["ml2d_state.npz"]
        state = EMState.load(folder / f"ml_ckpt_{world}" / "ml2d_state.npz")
        assert state.iteration == 4
        np.testing.assert_allclose(state.posteriors, results[f"ml2d_post_{world}"])


# ---------------------------------------------------------------- reductions, failures

def _hang_rank(out: Path) -> None:
    assert parallel.init_from_env()
    if parallel.rank() == 1:
        os._exit(0)  # dies without leaving the group
    try:
        parallel.all_reduce_sum([torch.ones(3)])
    except parallel.RankFailure as exc:
        (out / "error.txt").write_text(str(exc))
    os._exit(0)  # the group is broken: leave without tearing it down


def test_reductions_and_shards(results):
    folder = results["_dir"]
    assert isinstance(folder, Path)
    np.testing.assert_allclose(np.load(folder / "red_x.npy"), np.float32(0.1) + np.float32(0.2))
    np.testing.assert_allclose(np.load(folder / "red_c.npy"), [3 + 6j, 9 - 3j])
    np.testing.assert_allclose(np.load(folder / "red_a.npy"), np.arange(4) * 3.0)
    np.testing.assert_array_equal(np.load(folder / "red_i.npy"), [1, 20])
    np.testing.assert_allclose(np.load(folder / "red_nc.npy"), np.arange(6.0).reshape(2, 3).T * 3)
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(folder / f"red_bcast_{r}.npy"), [1.0, 0.0])
    # blocks of 3 rows alternate between the ranks; together every row exactly once
    np.testing.assert_array_equal(np.load(folder / "red_rows_0.npy"), [0, 1, 2, 6, 7, 8])
    np.testing.assert_array_equal(np.load(folder / "red_rows_1.npy"), [3, 4, 5, 9])
    np.testing.assert_array_equal(np.load(folder / "red_shard_0.npy"), [0, 2, 4])
    np.testing.assert_array_equal(np.load(folder / "red_shard_1.npy"), [1, 3])


def test_resumed_two_rank_run_equals_straight_run(results):
    """2 ranks stopped after 2 of 4 iterations (rank 0's checkpoint), then resumed."""
    np.testing.assert_allclose(results["ml2d_resumed_post_2"], results["ml2d_post_2"],
                               atol=1e-6)


def test_one_rank_is_a_no_op():
    x = torch.ones(2)
    parallel.all_reduce_sum([x])
    assert parallel.world() == 1 and parallel.rank() == 0 and parallel.is_main()
    assert parallel.shard([1, 2, 3]) == [1, 2, 3]
    np.testing.assert_array_equal(parallel.owned_rows(5), np.arange(5))
    np.testing.assert_array_equal(x, [1.0, 1.0])


def test_dead_rank_stops_the_others_with_a_clear_error(tmp_path):
    t0 = time.perf_counter()
    parallel.spawn(_hang_rank, 2, (tmp_path,), timeout_s=10)
    assert time.perf_counter() - t0 < 60
    msg = (tmp_path / "error.txt").read_text()
    assert "rank 0 of 2" in msg and "resume" in msg


def _slow_rank(out: Path) -> None:
    assert parallel.init_from_env()
    if parallel.rank() == 1:
        time.sleep(8)  # alive but not taking part: a hang
        os._exit(0)
    t0 = time.perf_counter()
    try:
        parallel.all_reduce_sum([torch.ones(3)])
    except parallel.RankFailure as exc:
        (out / "error.txt").write_text(f"{time.perf_counter() - t0:.3f}\n{exc}")
    os._exit(0)


def test_hanging_rank_stops_the_others_after_the_timeout(tmp_path):
    parallel.spawn(_slow_rank, 2, (tmp_path,), timeout_s=2)
    seconds, msg = (tmp_path / "error.txt").read_text().split("\n", 1)
    assert 1.5 < float(seconds) < 6.0
    assert "rank 0 of 2" in msg and "resume" in msg


def test_world_without_rank_or_master_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="RANK is not set"):
        parallel.init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert parallel.init_from_env() is False


def test_bad_timeout_is_refused(monkeypatch):
    monkeypatch.setenv("TOMOHET_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TOMOHET_DIST_TIMEOUT"):
        parallel.default_timeout()

"""``vae3d`` on 2 gloo ranks (spawned here, CPU): each rank computes its row blocks of the
data into one shared store (in the checkpoint folder, removed afterwards), trains on its
share of every batch, the gradients are summed over ranks, and the latents are those of
1 rank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*latent collapse:RuntimeWarning")

N = 32
KW = {"zdim": 2, "n_epochs": 2, "batch_size": 8, "enc_channels": 4, "enc_hidden": 16,
      "dec_channels": 4, "beta_warmup": 0, "progress": False, "random_state": 2}


def _fit(out: Path) -> None:
    """Fit vae3d, counting the particles this rank's loss saw and the rows it computed;
    rank 0 saves the latents."""
    import tomohet.methods.vae3d.data as vd
    import tomohet.methods.vae3d.train as vt
    from tomohet.methods.vae3d import Vae3DMethod

    particles, _, _ = make_tilt_set(n=N, box=16, n_tilts=9, snr=1.0, seed=3)
    seen: list[int] = []
    built: list[int] = []
    batch_loss, iter_reference = vt.batch_loss, vd.iter_reference

    def counting(model, y, *args, **kwargs):
        seen.append(int(y.shape[0]))
        return batch_loss(model, y, *args, **kwargs)

    def building(*args, **kwargs):
        for idx, y, w in iter_reference(*args, **kwargs):
            built.extend(int(i) for i in idx)
            yield idx, y, w

    world, me = parallel.world(), parallel.rank()
    vt.batch_loss, vd.iter_reference = counting, building
    block, vd.BLOCK = vd.BLOCK, 5  # several row blocks per rank
    try:
        z = Vae3DMethod(checkpoint_dir=str(out / f"ck_{world}"), **KW).fit(particles).transform()
    finally:
        vt.batch_loss, vd.iter_reference = batch_loss, iter_reference
        vd.BLOCK = block
    (out / f"seen_{world}_{me}.json").write_text(json.dumps(seen))
    (out / f"built_{world}_{me}.json").write_text(json.dumps(built))
    if parallel.is_main():
        np.save(out / f"z_{world}.npy", z)


def test_vae3d_two_ranks_share_data_and_batches_and_give_one_rank_latents(tmp_path):
    parallel.spawn(as_rank, 2, (_fit, tmp_path), timeout_s=120)
    _fit(tmp_path)  # one rank, in this process
    one, two = np.load(tmp_path / "z_1.npy"), np.load(tmp_path / "z_2.npy")
    seen = {k: json.loads((tmp_path / f"seen_{k}.json").read_text())
            for k in ("1_0", "2_0", "2_1")}
    # every batch of 8 is split 4 + 4: each rank computes half of every epoch
    assert sum(seen["1_0"]) == N * KW["n_epochs"]
    assert seen["2_0"] == seen["2_1"] == [b // 2 for b in seen["1_0"]]
    # the data: each rank computed its blocks of 5 rows, into files that are gone
    built = {k: json.loads((tmp_path / f"built_{k}.json").read_text())
             for k in ("1_0", "2_0", "2_1")}
    assert sorted(built["1_0"]) == list(range(N))
    assert sorted(built["2_0"]) == [i for i in range(N) if (i // 5) % 2 == 0]
    assert sorted(built["2_1"]) == [i for i in range(N) if (i // 5) % 2 == 1]
    for world in (1, 2):
        assert sorted(p.name for p in (tmp_path / f"ck_{world}").iterdir()) == ["checkpoints"]
    # gradients summed over ranks: the 1-rank training up to float rounding (a rank
    # training on its half alone drifts away by far more)
    assert np.isfinite(one).all() and np.abs(one).max() > 1e-3
    np.testing.assert_allclose(two, one, atol=1e-3 * max(1.0, np.abs(one).max()))

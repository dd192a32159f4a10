"""``vae3d``'s per-particle passes split over 2 gloo ranks (spawned here, CPU): without a
checkpoint folder the ranks still share one data store (in ``TMPDIR``), each computing
only its row blocks; across machines (simulated) a shared folder is closed and reopened
and a folder some rank cannot see falls back to every rank computing every row; the
encoding and the per-particle loss are computed by each rank for its blocks only and
gathered in particle order on every rank, equal to one rank's."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel

torch.set_num_threads(1)
N, ROWS, ENC = 23, 5, 4  # particles, rows per build block, particles per encoding block
KW: dict[str, Any] = {"zdim": 2, "enc_channels": 4, "enc_hidden": 16, "dec_channels": 4,
                      "progress": False, "random_state": 2}


def _builds(out: Path, particles, built: dict[str, list[int]], left: dict[str, list[str]]):
    """The four ways the data can be built (counting the rows each rank computes and the
    files left behind) -> the data built without a folder on this machine."""
    import tomohet.methods.vae3d.data as vd

    world, me = parallel.world(), parallel.rank()
    log: list[int] = []
    iter_reference = vd.iter_reference

    def building(*args, **kwargs):
        for idx, y, w in iter_reference(*args, **kwargs):
            log.extend(int(i) for i in idx)
            yield idx, y, w

    def build(key: str, folder: Path | None = None):
        data = vd.build_data(particles, None, 3, folder=None if folder is None else str(folder))
        parallel.barrier()  # every rank has built: what is left on disk is left for good
        built[key], left[key] = sorted(log), sorted(os.listdir(folder or out / "tmp"))
        log.clear()
        return data

    env = os.environ.get("LOCAL_WORLD_SIZE")
    saved = vd.iter_reference, vd.BLOCK, tempfile.tempdir
    vd.iter_reference, vd.BLOCK, tempfile.tempdir = building, ROWS, str(out / "tmp")
    try:
        data = build("tmp")  # no folder, every rank on this machine: TMPDIR is shared
        os.environ["LOCAL_WORLD_SIZE"] = "1"  # as if each rank ran on a machine of its own
        own = out / f"own_{world}_{me}"  # a folder no other rank sees
        own.mkdir()
        for key, folder in (("folder", out / f"ck_{world}"), ("own", own), ("none", None)):
            other = build(key, folder)
            np.testing.assert_array_equal(other.y.read(np.arange(N)), data.y.read(np.arange(N)))
            np.testing.assert_array_equal(other.w.read(np.arange(N)), data.w.read(np.arange(N)))
            other.close()
    finally:
        vd.iter_reference, vd.BLOCK, tempfile.tempdir = saved
        if env is None:
            os.environ.pop("LOCAL_WORLD_SIZE", None)
        else:
            os.environ["LOCAL_WORLD_SIZE"] = env
    return data


def _work(out: Path) -> None:
    from tomohet.methods.vae3d import Vae3DMethod
    from tomohet.methods.vae3d.data import loss_mask
    from tomohet.methods.vae3d.model import kl_divergence, particle_nll
    from tomohet.methods.vae3d.train import encode_all, loss_of
    from tomohet.physics.fourier import radial_shell_index, volume_to_ft

    world, me = parallel.world(), parallel.rank()
    (out / f"ck_{world}").mkdir(exist_ok=True)
    (out / "tmp").mkdir(exist_ok=True)
    particles, _, _ = make_tilt_set(n=N, box=16, n_tilts=7, snr=1.0, seed=3)
    built: dict[str, list[int]] = {}
    left: dict[str, list[str]] = {}
    data = _builds(out, particles, built, left)
    cpu = torch.device("cpu")
    model = Vae3DMethod(**KW)._start(data, cpu)[0]  # consensus, noise, scales: collectives
    floor = float(model.config["floor"])
    read: list[int] = []
    rows = data.rows

    def reading(index):
        read.extend(int(i) for i in np.asarray(index))
        return rows(index)

    data.rows = reading  # type: ignore[method-assign]
    mu, lv = encode_all(model, data, cpu, batch=ENC)
    built["encode"] = sorted(read)
    read.clear()
    loss = loss_of(model, data, floor, cpu, batch=ENC)
    built["loss"] = sorted(read)
    data.rows = rows  # type: ignore[method-assign]
    # every particle at once on this rank: the gathered rows are in particle order
    y, w = rows(np.arange(N))
    with torch.no_grad():
        mu1, lv1 = model.encode(y, w)
        shell = radial_shell_index(model.small, 3)
        nll = particle_nll(volume_to_ft(model.decode(mu1)), y, w, loss_mask(w, floor),
                           model.noise, shell)
        loss1 = nll + kl_divergence(mu1, lv1)
    np.testing.assert_allclose(mu.numpy(), mu1.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lv.numpy(), lv1.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, loss1.numpy(), rtol=1e-5)
    data.close()
    tag = f"{world}_{me}"
    (out / f"built_{tag}.json").write_text(json.dumps({"built": built, "left": left}))
    for name, value in (("mu", mu.numpy()), ("lv", lv.numpy()), ("loss", loss),
                        ("y", y.numpy()), ("w", w.numpy())):
        np.save(out / f"{name}_{tag}.npy", value)


def _mine(size: int, rank: int) -> list[int]:
    return [i for i in range(N) if (i // size) % 2 == rank]


def test_vae3d_ranks_build_and_encode_only_their_rows(tmp_path):
    parallel.spawn(as_rank, 2, (_work, tmp_path), timeout_s=120)
    _work(tmp_path)  # one rank, in this process
    logs = {k: json.loads((tmp_path / f"built_{k}.json").read_text())
            for k in ("1_0", "2_0", "2_1")}
    every = list(range(N))
    for key in ("tmp", "folder", "own", "none", "encode", "loss"):
        assert logs["1_0"]["built"][key] == every
    for r in (0, 1):
        got = logs[f"2_{r}"]["built"]
        assert got["tmp"] == got["folder"] == _mine(ROWS, r)  # shared: each its blocks
        assert got["own"] == got["none"] == every  # nothing shared: each computes all
        assert got["encode"] == got["loss"] == _mine(ENC, r)
        # nothing left in TMPDIR or the folders once every rank has its data open
        assert logs[f"2_{r}"]["left"] == {"tmp": [], "folder": [], "own": [], "none": []}
    for name in ("y", "w", "mu", "lv", "loss"):
        one = np.load(tmp_path / f"{name}_1_0.npy")
        assert np.isfinite(one).all() and np.abs(one).max() > 0
        for r in (0, 1):  # every rank ends with every row: one rank's up to rounding
            # (the consensus the latents are encoded against is a float64 sum over ranks)
            np.testing.assert_allclose(np.load(tmp_path / f"{name}_2_{r}.npy"), one,
                                       rtol=1e-5, atol=1e-6 * np.abs(one).max())

"""Set-up passes of ``vae`` and ``vae3d`` streamed and split over ranks.

The encoders' input scales (and the pooled encoder's ``lam``) come from float64 moments
streamed over this rank's particles and summed over ranks
(:mod:`tomohet.methods.vae.moments`) instead of every particle's inputs held in memory;
vae3d's consensus, noise, encoder scales and weight floor stream each rank's blocks and
add sums and histograms over ranks. Checked here against the in-memory formulas, across
batch sizes, and on 2 gloo ranks (spawned, CPU) against 1 rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel
from tomohet.methods.vae.moments import StreamedMoments, inverse_std_scale

torch.set_num_threads(1)
N, BATCH = 27, 4  # tilt VAE: 7 blocks of 4, 4 on rank 0 and 3 on rank 1
N3, BLOCK3 = 23, 5  # vae3d: 5 blocks of 5, 3 on rank 0 and 2 on rank 1
ENCODERS = ("backproject", "tilt")
CAL_PASSES = {"backproject": 2, "tilt": 1}  # after the consensus and noise passes


def _tilt_set():
    from tomohet.methods.vae.stream import stream_samples

    p, _, _ = make_tilt_set(n=N, box=16, n_tilts=7, snr=1.0, seed=4)
    return p, stream_samples(p, np.arange(N), p.visible)


def _prepared(encoder: str, source, particles, batch: int = BATCH, **kwargs):
    from tomohet.data.keys import half_sets
    from tomohet.methods.vae import TiltVAEMethod
    from tomohet.methods.vae.model import TiltVAE
    from tomohet.methods.vae.train import prepare_model

    config = TiltVAEMethod(zdim=3, enc_dim=16, dec_dim=16, encoder=encoder,
                           random_state=5, **kwargs).model_config(16)
    model = TiltVAE(config)
    prepare_model(model, source, torch.device("cpu"),
                  half_sets(particles.names, particles.tomo_names), batch=batch)
    return model


def _residuals(model, source, batch: int):
    from tomohet.methods.vae.reference import iterate_all

    for _rows, pb in iterate_all(source, batch):
        yield pb, pb.data - pb.transfer * model.consensus_at(pb.freq)


def _old_scale(x: torch.Tensor) -> torch.Tensor:
    """The in-memory formula the streamed one replaces: 1 / std of all rows at once."""
    std = x.std(0)
    return 1.0 / std.clamp_min(float(std.mean()) * 1e-3 + 1e-12)


def _old_backproject(enc, batches) -> tuple[float, torch.Tensor]:
    dens, vals = [], []
    for pb, resid in batches:
        num, den = enc.pooled(pb, resid)
        dens.append(den[den > 0])
        vals.append((num, den))
    lam = 0.1 * float(torch.cat(dens).double().mean())
    x = torch.cat([torch.cat([n[..., 0] / (d + lam), n[..., 1] / (d + lam)], -1)
                   for n, d in vals])
    return lam, _old_scale(x.double())


def _old_tilt(enc, batches) -> torch.Tensor:
    xs = []
    for pb, resid in batches:
        x, seen = enc.inputs(pb, resid)
        xs.append(x[seen])
    return _old_scale(torch.cat(xs).double())


@pytest.fixture(scope="module")
def prepared():
    particles, source = _tilt_set()
    return source, {e: _prepared(e, source, particles) for e in ENCODERS}


# ---------------------------------------------------------------- moments
def test_streamed_moments_are_numpy_mean_and_std_in_any_blocks():
    g = np.random.default_rng(0)
    x = g.normal(3.0, 0.5, (301, 5)) * np.array([1.0, 1e-3, 1e3, 7.0, 1.0])
    x[:, 4] = 2.5  # a constant input: std 0
    for cuts in ([301], [1, 300], [100, 17, 0, 184]):
        m = StreamedMoments(5)
        for part in np.split(x, np.cumsum(cuts)[:-1]):
            m.add(torch.from_numpy(part).float())
        xf = x.astype(np.float32).astype(np.float64)
        assert m.n == 301
        np.testing.assert_allclose(m.mean().numpy(), xf.mean(0), rtol=1e-12)
        np.testing.assert_allclose(m.std().numpy()[:4], xf.std(0, ddof=1)[:4], rtol=1e-9)
        assert float(m.std()[4]) < 1e-6
        scale = inverse_std_scale(m.reduce())
        floor = float(m.std().mean()) * 1e-3 + 1e-12
        np.testing.assert_allclose(scale.numpy(),
                                   1 / np.maximum(xf.std(0, ddof=1), floor), rtol=1e-6)


def test_moments_of_fewer_than_two_rows():
    m = StreamedMoments(3)
    m.add(torch.ones((1, 3)))
    assert torch.equal(inverse_std_scale(m), torch.ones(3))
    with pytest.raises(ValueError, match=">= 2 rows"):
        m.std()


# ---------------------------------------------------------------- tilt VAE encoders
def test_pooled_weight_is_the_pooled_denominator(prepared):
    source, models = prepared
    enc = models["backproject"].encoder
    for pb, resid in _residuals(models["backproject"], source, 11):
        assert torch.equal(enc.pooled_weight(pb), enc.pooled(pb, resid)[1])


@pytest.mark.parametrize("encoder", ENCODERS)
def test_streamed_calibration_is_the_in_memory_formula(prepared, encoder):
    source, models = prepared
    model = models[encoder]
    enc = model.encoder
    if encoder == "backproject":
        lam, scale = _old_backproject(enc, _residuals(model, source, 7))
        assert float(enc.lam) == pytest.approx(lam, rel=1e-6)
    else:
        scale = _old_tilt(enc, _residuals(model, source, 7))
    assert not torch.equal(enc.scale, torch.ones_like(enc.scale))
    np.testing.assert_allclose(enc.scale.numpy(), scale.numpy(), rtol=1e-6)


def test_calibration_without_consensus_sees_the_data():
    """use_consensus off: the encoder reads the data themselves in training, so its
    scales are those of the data (they were those of the consensus residual)."""
    from tomohet.methods.vae.reference import iterate_all

    particles, source = _tilt_set()
    model = _prepared("tilt", source, particles, use_consensus=False)
    scale = _old_tilt(model.encoder, ((pb, pb.data) for _r, pb in iterate_all(source, 7)))
    np.testing.assert_allclose(model.encoder.scale.numpy(), scale.numpy(), rtol=1e-6)
    resid = _old_tilt(model.encoder, _residuals(model, source, 7))
    assert not np.allclose(resid.numpy(), scale.numpy(), rtol=1e-2)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_calibration_does_not_depend_on_batch_size(prepared, encoder):
    from tomohet.methods.vae.reference import iterate_all

    source, models = prepared
    model = models[encoder]
    enc = model.encoder
    lam0, scale0 = float(getattr(enc, "lam", 0.0)), enc.scale.clone()
    for batch in (1, 13, N):
        enc.calibrate(lambda b=batch: (pb for _r, pb in iterate_all(source, b)),
                      lambda pb: pb.data - pb.transfer * model.consensus_at(pb.freq))
        np.testing.assert_allclose(enc.scale.numpy(), scale0.numpy(), rtol=1e-6)
        assert float(getattr(enc, "lam", 0.0)) == pytest.approx(lam0, rel=1e-6)


# ---------------------------------------------------------------- 2 ranks
def _setups(out: Path) -> None:
    """Tilt VAE set-up (both encoders) and vae3d set-up on this rank, counting the rows
    each reads; saves what every rank ends with."""
    import tomohet.methods.vae.stream as S
    import tomohet.methods.vae3d.data as D

    world, me = parallel.world(), parallel.rank()
    res: dict[str, list[float]] = {}
    seen: dict[str, list[int]] = {}
    particles, source = _tilt_set()
    slot_batch = S._slot_batch  # where the particles' images are read
    for encoder in ENCODERS:
        rows: list[int] = []

        def counting(p, kept, *args, rows=rows):
            rows.extend(int(i) for i in kept)
            return slot_batch(p, kept, *args)

        S._slot_batch = counting
        try:
            model = _prepared(encoder, source, particles)
        finally:
            S._slot_batch = slot_batch
        seen[encoder] = rows
        res[f"{encoder}_scale"] = model.encoder.scale.tolist()
        if encoder == "backproject":
            res["lam"] = [float(model.encoder.lam)]
    p3, _, _ = make_tilt_set(n=N3, box=16, n_tilts=7, snr=1.0, seed=6)
    data = D.build_data(p3, 40.0, batch_size=8)  # every rank its own copy of every row
    read: list[int] = []
    rows_of = data.rows

    def reading(index):
        read.extend(int(i) for i in index)
        return rows_of(index)

    data.rows = reading  # type: ignore[method-assign]
    block, D.BLOCK = D.BLOCK, BLOCK3
    try:
        floor = D.weight_floor(data)
        mu, s2 = D.consensus_and_noise(data, floor)
        rms, wmean = D.encoder_scales(data, mu, torch.ones(()))
    finally:
        D.BLOCK = block
    seen["vae3d"] = read
    if world == 1:  # the in-memory values, for the 1-rank run
        _y, w_all = rows_of(np.arange(N3))
        res["median_w"] = [float(np.sort(w_all[w_all > 0].numpy())[(int((w_all > 0).sum()) - 1)
                                                                   // 2])]
    data.close()
    res.update(floor=[floor], mu=torch.view_as_real(mu).reshape(-1).tolist(),
               s2=s2.tolist(), rms=[rms], wmean=[wmean])
    (out / f"res_{world}_{me}.json").write_text(json.dumps({"res": res, "seen": seen}))


def test_setups_split_over_two_ranks_equal_one_rank(tmp_path):
    parallel.spawn(as_rank, 2, (_setups, tmp_path), timeout_s=180)
    _setups(tmp_path)
    got = {k: json.loads((tmp_path / f"res_{k}.json").read_text())
           for k in ("1_0", "2_0", "2_1")}
    # each rank read only its blocks, in every pass
    blocks = [list(range(s, min(N, s + BATCH))) for s in range(0, N, BATCH)]
    for encoder in ENCODERS:
        passes = 2 + CAL_PASSES[encoder]
        assert got["1_0"]["seen"][encoder] == list(range(N)) * passes
        for me in (0, 1):
            assert got[f"2_{me}"]["seen"][encoder] == sum(blocks[me::2], []) * passes
    blocks3 = [list(range(s, min(N3, s + BLOCK3))) for s in range(0, N3, BLOCK3)]
    assert got["1_0"]["seen"]["vae3d"] == list(range(N3)) * 5  # floor 2, noise 2, scales 1
    for me in (0, 1):
        assert got[f"2_{me}"]["seen"]["vae3d"] == sum(blocks3[me::2], []) * 5
    one = got["1_0"]["res"]
    # the exact median of the positive weights: histograms of counts sum exactly
    assert one["floor"][0] == pytest.approx(1e-4 * one["median_w"][0], rel=1e-12)
    for key, value in one.items():
        if key == "median_w":
            continue
        ref = np.asarray(value)
        assert np.isfinite(ref).all() and np.abs(ref).max() > 0, key
        two = [np.asarray(got[f"2_{me}"]["res"][key]) for me in (0, 1)]
        np.testing.assert_array_equal(two[0], two[1], err_msg=key)  # every rank the same
        np.testing.assert_allclose(two[0], ref, rtol=1e-6,
                                   atol=1e-6 * np.abs(ref).max(), err_msg=key)
    assert got["2_0"]["res"]["floor"] == one["floor"]

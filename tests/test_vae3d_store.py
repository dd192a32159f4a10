"""vae3d's per-particle data on disk (:mod:`tomohet.methods.vae3d.store`): rows read
back as written, in any order; the streamed median and sums equal those of the whole
array; build_data's rows are each particle's own back-projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set

from tomohet.methods.linear.reference import crop_rfft, reference_batch, subsample_rfft
from tomohet.methods.vae3d import data as D
from tomohet.methods.vae3d.store import RowStore

torch.set_num_threads(1)


def test_row_store_reads_back_rows_in_any_order():
    rng = np.random.default_rng(0)
    full = (rng.normal(size=(23, 3, 4)) + 1j * rng.normal(size=(23, 3, 4))).astype(np.complex64)
    store = RowStore(23, (3, 4), np.complex64)
    order = rng.permutation(23)
    for part in np.array_split(order, 4):  # scattered rows, written in four calls
        store.write(part, full[part])
    rows = np.array([22, 0, 5, 5, 6, 7, 1, 22])  # unsorted, repeats, runs
    np.testing.assert_array_equal(store.read(rows), full[rows])
    got = np.concatenate([b for _s, b in store.blocks(5)])
    np.testing.assert_array_equal(got, full)
    assert store.nbytes == 23 * 12 * 8
    with pytest.raises(IndexError):
        store.read(np.array([23]))
    unwritten = RowStore(4, (2,), np.float32)
    np.testing.assert_array_equal(unwritten.read(np.arange(4)), np.zeros((4, 2)))
    store.close()


def test_row_store_leaves_no_file_behind(tmp_path):
    """The store's file is anonymous: nothing in its folder while open or after."""
    store = RowStore(5, (64, 64), np.float32, folder=str(tmp_path))
    store.write(np.arange(5), np.ones((5, 64, 64)))
    assert list(tmp_path.iterdir()) == []
    assert float(store.read(np.array([4])).sum()) == 64 * 64
    store.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_positive_median_is_torch_median_of_the_positive_values(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g).abs() * 10.0 ** torch.randint(-6, 6, (n,), generator=g)
    x[::3] = 0.0  # zeros and negatives are left out
    x[1::5] = -1.0
    x[2::7] = 0.125  # ties
    blocks = list(torch.split(x, 13))
    pos = x[x > 0]
    got = D.positive_median(lambda: iter(blocks))
    if pos.numel() == 0:
        assert got is None
    else:
        assert got == float(pos.median())


def test_positive_median_of_nothing():
    assert D.positive_median(lambda: [torch.zeros(5), -torch.ones(3)]) is None


def test_build_data_rows_are_each_particles_reference():
    """Rows on disk = each particle's (Y, W) computed alone; sums and scales streamed
    over blocks = the same over the whole array."""
    p, _, _ = make_tilt_set(n=11, box=16, n_tilts=7, snr=1.0, seed=5)
    data = D.build_data(p, 40.0, batch_size=4)
    small, box = data.small, p.optics.box
    assert small < box and data.n_particles == 11
    for i in (9, 0, 4):
        yb, wb = reference_batch(p, np.array([i]), "cpu")
        y_ref = crop_rfft(subsample_rfft(yb), box, small)[0]
        w_ref = crop_rfft(subsample_rfft(wb), box, small)[0] / (small / box) ** 3
        y, w = data.rows(np.array([i]))
        torch.testing.assert_close(y[0], y_ref.to(torch.complex64), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(w[0], w_ref.real.float().clamp_min(0), rtol=1e-5,
                                   atol=1e-6)
    y_all, w_all = data.rows(np.arange(11))
    floor = D.weight_floor(data)
    assert floor == pytest.approx(D.WEIGHT_FLOOR * float(w_all[w_all > 0].median()), rel=0)
    mu, _s2 = D.consensus_and_noise(data, floor)
    sw = w_all.sum(0)
    direct = y_all.sum(0) / (sw + 1e-3 * sw[sw > 0].mean())
    torch.testing.assert_close(mu, direct, rtol=1e-5, atol=1e-6 * float(direct.abs().max()))
    _rms, wmean = D.encoder_scales(data, mu, torch.ones(()))
    assert wmean == pytest.approx(float(w_all.double().mean()), rel=1e-6)
    data.close()

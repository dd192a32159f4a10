"""The VAE's samples made on demand from the images (:mod:`tomohet.methods.vae.stream`)
against the in-memory cache (:func:`tomohet.methods.vae.data.build_cache`) and a direct
FFT: the same batches, the same latents, and only the requested images read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set

from tomohet.data.sources import ArrayImageSource
from tomohet.methods.vae import TiltVAEETMethod, TiltVAEMethod
from tomohet.methods.vae.data import all_tilts, build_cache, sample_tilts
from tomohet.methods.vae.stream import stream_samples

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*latent collapse:RuntimeWarning",
                                        "ignore:.*are skipped:RuntimeWarning")

FIELDS = ("image", "particle", "freq", "shell", "pix", "data", "transfer", "tilt_w", "herm",
          "rotation", "premult_power")


def _set(n: int = 40, premultiplied: bool = False):
    """Tiny set with shifts, CTF scales, missing tilts (and optionally premultiplied)."""
    p, labels, _ = make_tilt_set(n=n, box=16, n_tilts=9, snr=0.5, seed=7)
    rng = np.random.default_rng(1)
    vis = rng.random(p.visible.shape) > 0.25
    vis[:3, :6] = False  # a few particles with 3 tilts only
    p = dataclasses.replace(p, visible=vis, shift_A=rng.normal(0, 6, p.shift_A.shape),
                            ctf_scale=rng.uniform(0.7, 1.2, p.ctf_scale.shape))
    if premultiplied:
        p = dataclasses.replace(p, optics=dataclasses.replace(p.optics,
                                                              ctf_premultiplied=True))
    return p, labels


class _CountingImages(ArrayImageSource):
    """Images in memory that remember which were read."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__(images)
        self.seen: set[int] = set()

    def read(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        self.seen.update(int(i) for i in idx[idx >= 0])
        return super().read(idx)


def _assert_same_batch(a, b) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if x is None or y is None:
            assert x is None and y is None, f
            continue
        assert x.shape == y.shape, f
        if x.is_floating_point() or x.is_complex():
            torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-6 * float(x.abs().max()))
        else:
            assert torch.equal(x, y), f
    assert (a.n_particles, a.n_slots) == (b.n_particles, b.n_slots)


@pytest.mark.parametrize("premultiplied", [False, True])
def test_streamed_batches_equal_cached(premultiplied):
    """Random particles and tilt subsets (slots -1 and not visible included), the whole
    set, a resolution limit and a shell limit: the same samples in the same order."""
    p, _ = _set(premultiplied=premultiplied)
    index = np.arange(2, p.n_particles, 2)[::-1].copy()  # not in row order
    vis = p.visible[index]
    for max_res in (None, 40.0):
        cache = build_cache(p, index, vis, max_res, batch_size=7)
        stream = stream_samples(p, index, vis, max_res)
        for shell in (None, 5.0):
            c = cache if shell is None else cache.restrict(shell)
            s = stream if shell is None else stream.restrict(shell)
            rows = torch.tensor([4, 0, 11, 4, 17])
            slots = sample_tilts(c.visible[rows], 5, torch.Generator().manual_seed(3))
            slots[1, 0] = -1
            slots[2, 1] = int(np.nonzero(~vis[11])[0][0])  # a slot the particle lacks
            _assert_same_batch(c.gather(rows, slots), s.gather(rows, slots))
            every = torch.arange(len(index))
            _assert_same_batch(c.gather(every, all_tilts(c.visible)),
                               s.gather(every, all_tilts(s.visible)))


def test_streamed_data_are_the_image_transforms():
    """Each sample's value is the centred-origin rfft of its image at its pixel (numpy
    FFT), and the source reads only the images of the requested particles and slots."""
    p, _ = _set()
    counting = _CountingImages(p.images._array)
    p = dataclasses.replace(p, images=counting)
    index = np.arange(p.n_particles)
    stream = stream_samples(p, index, p.visible)
    rows = torch.tensor([5, 21])
    slots = torch.tensor([[0, 3, 8], [1, -1, 6]])
    pb = stream.gather(rows, slots)
    wanted = {int(p.image_index[r, t]) for r, ts in zip([5, 21], slots.tolist(), strict=True)
              for t in ts if t >= 0 and p.visible[r, t]}
    assert counting.seen == wanted
    box, dh = p.optics.box, p.optics.box // 2 + 1
    for i in torch.unique(pb.image).tolist():
        b, s = divmod(i, 3)
        img = p.images._array[p.image_index[int(rows[b]), int(slots[b, s])]]
        ft = np.fft.rfft2(np.fft.ifftshift(img.astype(np.float64))).reshape(-1)
        sel = pb.image == i
        got = pb.data[sel].numpy()
        np.testing.assert_allclose(got, ft[pb.pix[sel].numpy()], rtol=1e-4,
                                   atol=1e-4 * np.abs(ft).max())
        assert int(pb.pix[sel].max()) < box * dh


def _fit(cls, particles, monkeypatch, cached: bool, **kw):
    """Fit with samples streamed (the method's path) or, with ``cached``, from the
    in-memory cache the VAE used before."""
    import tomohet.methods.vae.method as vm

    if cached:
        def from_cache(p, index, visible, max_res=None, device="cpu"):
            return build_cache(p, index, visible, max_res, device=device).to(device)

        monkeypatch.setattr(vm, "stream_samples", from_cache)
    try:
        return cls(**kw).fit(particles)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("cls", [TiltVAEMethod, TiltVAEETMethod])
def test_streamed_training_gives_the_cached_latents(cls, monkeypatch):
    """Same seed, same data: the latents (and the vae-et encoding of skipped particles)
    are those of the in-memory cache up to float rounding."""
    p, _ = _set(n=48)
    kw = {"zdim": 2, "enc_dim": 16, "dec_dim": 16, "dec_layers": 2, "batch_size": 8,
          "n_epochs": 2, "n_tilts": 5, "beta_warmup": 0, "progress": False,
          "random_state": 4, "encode_skipped": True}
    streamed = _fit(cls, p, monkeypatch, False, **kw)
    cached = _fit(cls, p, monkeypatch, True, **kw)
    if cls is TiltVAEETMethod:
        assert len(streamed.skipped_) >= 3  # the 3-tilt particles, encoded afterwards
    z1, z2 = streamed.transform(), cached.transform()
    assert np.isfinite(z1).all()
    np.testing.assert_allclose(z1, z2, rtol=0, atol=1e-5 * max(1.0, np.abs(z2).max()))
    assert [h["loss"] for h in streamed.history_] == pytest.approx(
        [h["loss"] for h in cached.history_], rel=1e-6)

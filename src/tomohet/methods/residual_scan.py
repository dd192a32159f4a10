"""Discovery's residual maps without holding them (issue 17: memory flat in N).

:func:`residual_batches` makes each particle's residual map (the module doc of
:mod:`tomohet.methods.discovery`, step 1) a batch at a time; :func:`residual_maps` keeps
them all (N, d, d, d). :func:`~tomohet.methods.discovery.discover` needs two things from
them: the test's sums over particles (:class:`~tomohet.methods.detection.
VarianceStats`), and, once the test has chosen a scale and a mask, the leading principal
components of the low-passed maps inside that mask with a k-means partition
(:func:`~tomohet.methods.discovery.component_labels`). :class:`ResidualScan` takes the
maps a batch at a time as the residual pass makes them:

* each batch is added to the test's statistics (float64 sums, summed over ranks), and
  written to a row store on disk (:class:`~tomohet.methods.vae3d.store.RowStore`: an
  unlinked temporary file, read back by batch; each rank holds its own rows only);
* the partition reads this rank's rows back, low-passes them and accumulates the
  covariance of the masked voxels (m x m, m the voxels in the mask; summed over ranks);
  its leading eigenvectors give each particle's scores (the same principal components
  as the SVD of the centred maps, up to sign), whose N x r table is summed over ranks
  (each row from one rank) and clustered identically on every rank. Beyond
  :data:`GRAM_MAX` voxels the leading eigenvectors come from subspace iteration over
  the store instead (no m x m matrix).

Memory per rank: one batch of maps, the statistics (2 (B + 1) S d^3 float64) and the
covariance (m^2 float64), plus O(N) labels and scores: nothing of size N d^3. What is
computed does not depend on the batch size or the number of ranks beyond float64
rounding of the sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import scipy.linalg
import torch

from tomohet import parallel
from tomohet.methods.clustering import kmeans
from tomohet.methods.detection import SCALES, Detection, VarianceStats, gaussian_lowpass
from tomohet.methods.vae3d.store import RowStore
from tomohet.physics.forward import NoiseModel, model_transforms
from tomohet.physics.projection import Backprojector
from tomohet.physics.reconstruction import backproject

__all__ = ["ResidualScan", "GRAM_MAX", "kmeans_labels", "crop_to_small", "residual_batches",
           "small_box_for", "upsample_mask",
           "residual_maps"]

# masked voxels up to which the partition forms the m x m covariance (134 MB in float64
# at 4096: the whole 16^3 grid of a box-32 set); beyond, subspace iteration
GRAM_MAX = 4096


def small_box_for(box: int, pixel_size_A: float, resolution_A: float) -> int:
    """Even grid size whose Nyquist is ``resolution_A`` for a ``box`` at ``pixel_size_A``
    (at least 8, at most ``box``)."""
    d = int(round(2 * box * pixel_size_A / resolution_A / 2)) * 2
    return int(min(max(d, 8), box - box % 2))


def upsample_mask(mask: torch.Tensor, box: int) -> torch.Tensor:
    """A small-grid mask (d, d, d) on the full box (D, D, D) by Fourier zero-padding
    (centre d // 2 -> D // 2), clipped to [0, 1]."""
    d = mask.shape[-1]
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(mask.double())))
    big = torch.zeros((box, box, box), dtype=ft.dtype)
    lo = box // 2 - d // 2
    big[lo : lo + d, lo : lo + d, lo : lo + d] = ft
    vol = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(big))).real * (box / d) ** 3
    return vol.clamp(0, 1).float()


def crop_to_small(grid: torch.Tensor, small: int) -> torch.Tensor:
    """Fourier crop of fftshifted full transforms (B, P, P, P) to real volumes
    (B, d, d, d), d = ``small``, with a raised-cosine roll-off over the outer 2 shells
    (no ringing). The box centre P // 2 maps to d // 2."""
    p = grid.shape[-1]
    lo = p // 2 - small // 2
    ft = grid[..., lo : lo + small, lo : lo + small, lo : lo + small]
    c = torch.arange(small, device=grid.device, dtype=torch.float32) - small // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    edge = ((r - (small / 2 - 2)) / 2).clamp(0, 1)
    ft = ft * (0.5 * (1 + torch.cos(torch.pi * edge)))
    vol = torch.fft.ifftn(torch.fft.ifftshift(ft, dim=(-3, -2, -1)), dim=(-3, -2, -1))
    return torch.fft.fftshift(vol, dim=(-3, -2, -1)).real


def residual_batches(engine, consensus: torch.Tensor, noise: NoiseModel | None,
                     small: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """This rank's batches of :func:`residual_maps`, one at a time (nothing kept):
    (positions into ``engine.index`` (b,), maps (b, d, d, d) float32 on the CPU)."""
    proj = engine.projector(consensus[None])
    for rows in parallel.shard(engine.batches()):  # this rank's batches (tomohet.parallel)
        prep = engine.prepare(engine.index[rows])
        prep.data = prep.data - prep.transfer * model_transforms(proj, prep)[0]
        b = len(rows)
        bp = Backprojector(engine.box, b, pad=1, device=engine.device)
        backproject(bp, prep, noise=noise, volume_index=torch.arange(b, device=engine.device))
        yield np.asarray(rows), crop_to_small(bp.grids()[0], small).cpu()
        if engine.progress:
            engine.progress(b)


def residual_maps(engine, consensus: torch.Tensor, noise: NoiseModel | None,
                  small: int) -> torch.Tensor:
    """Per-particle noise-whitened residual back-projections, low-passed.

    engine: an :class:`~tomohet.methods.em.EMEngine` without a focus mask (its reference
    mask applies to the consensus model); consensus (D, D, D). Residual ``r = X - H P V``
    of every image, back-projected as ``sum H^* r / sigma^2`` into one grid per particle
    (subtomograms: rotated into the reference frame), Fourier-cropped to ``small``.
    -> (N, d, d, d) float32, rows in the order of ``engine.index``, on every rank. Holds
    all N maps: :func:`discover` streams them instead
    (:class:`ResidualScan`).
    """
    out = torch.zeros((len(engine.index), small, small, small))
    for rows, maps in residual_batches(engine, consensus, noise, small):
        out[torch.as_tensor(rows)] = maps
    parallel.all_reduce_sum([out])  # each row was filled by one rank, 0 on the others
    return out


def kmeans_labels(feats: np.ndarray, k: int, order: np.ndarray, seed: int) -> np.ndarray:
    """K-means (10 starts) on the rows of ``feats`` (N, r) taken in the name-defined
    ``order`` (so the result does not depend on the input row order). -> (N,) int64."""
    labels = np.empty(len(feats), dtype=np.int64)
    labels[order] = kmeans(feats[order], k, seed, n_init=10).labels
    return labels


def _top_eigenvectors(apply: Callable[[torch.Tensor], torch.Tensor], m: int, r: int,
                      iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Leading ``r`` eigenvectors (m, r) of a symmetric positive semi-definite operator
    given as ``apply(q) = C q`` (m, p) -> (m, p): subspace iteration on r + 8 vectors
    from a fixed random start, then Rayleigh-Ritz."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn((m, min(m, r + 8)), generator=g,
                                    dtype=torch.float64)).Q
    for _ in range(iters):
        q = torch.linalg.qr(apply(q)).Q
    t = q.T @ apply(q)
    _, vecs = torch.linalg.eigh((t + t.T) / 2)
    return (q @ vecs.flip(1))[:, :r]


class ResidualScan:
    """The residual maps of N particles, seen once as they are made.

    n: particles (rows 0..n-1, columns of ``splits``); small: d; splits (B, N) bool,
    the half-split nulls; batches: this rank's (rows (b,), maps (b, d, d, d)) pairs
    (:func:`residual_batches`). Reading them fills the test's
    statistics (summed over ranks) and this rank's rows of a temporary row store in
    ``folder`` (default ``TMPDIR``). Call :meth:`close` (or use ``with``) when done.
    """

    def __init__(self, n: int, small: int, splits: np.ndarray,
                 batches: Iterable[tuple[np.ndarray, torch.Tensor]],
                 scales: tuple[float, ...] = SCALES, folder: str | None = None) -> None:
        self.n, self.small = int(n), int(small)
        self.stats = VarianceStats(splits, small, scales)
        self.store = RowStore(self.n, (small, small, small), np.float32, folder=folder)
        self.blocks: list[np.ndarray] = []  # this rank's rows, batch by batch
        try:
            for rows, maps in batches:
                rows = np.asarray(rows, dtype=np.int64)
                self.store.write(rows, maps.detach().cpu().float().numpy())
                self.stats.add(rows, maps)
                self.blocks.append(rows)
            self.stats.reduce()
        except BaseException:
            self.store.close()
            raise

    def __enter__(self) -> ResidualScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def detection(self, alpha: float = 0.01, radius: float | None = None) -> Detection:
        """The calibrated test on all N maps (every rank gets the same)."""
        return self.stats.detection(alpha, radius)

    def _masked(self, scale: float, sel: torch.Tensor | None, wts: torch.Tensor | None,
                fit: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """This rank's rows, low-passed at ``scale``, voxels ``sel`` times ``wts``
        (all voxels when None): (rows, (b, m) float64); ``fit`` (N,) bool: only those
        rows."""
        for rows in self.blocks:
            if fit is not None:
                rows = rows[fit[rows]]
                if len(rows) == 0:
                    continue
            maps = torch.from_numpy(self.store.read(rows))
            x = gaussian_lowpass(maps, scale).reshape(len(rows), -1).double()
            yield rows, (x if sel is None or wts is None else x[:, sel] * wts)

    def _mean(self, scale: float, sel: torch.Tensor | None, wts: torch.Tensor | None,
              fit: np.ndarray | None = None) -> torch.Tensor:
        full = self.stats.mean(scale) if fit is None else None
        if full is not None:
            return full if sel is None or wts is None else full[sel] * wts
        total: torch.Tensor | None = None
        for _, x in self._masked(scale, sel, wts, fit):
            total = x.sum(0) if total is None else total + x.sum(0)
        m = int(sel.numel()) if sel is not None else self.small**3
        acc = torch.zeros(m, dtype=torch.float64) if total is None else total
        parallel.all_reduce_sum([acc])
        n_fit = self.n if fit is None else int(np.count_nonzero(fit))
        return acc / max(n_fit, 1)

    def features(self, scale: float, mask: torch.Tensor | None, r: int,
                 fit: np.ndarray | None = None) -> np.ndarray:
        """Scores (N, r) of every particle on the leading ``r`` principal components of
        the maps low-passed at ``scale``, inside ``mask`` (d, d, d) (voxels with weight
        > 0.05, multiplied by it) or everywhere (None); the same on every rank.
        ``fit`` (N,) bool: the mean and components from those rows only (a held-out
        test must not choose its direction on the rows it is tested on)."""
        if mask is None:
            sel = wts = None
            m = self.small**3
        else:
            w = mask.reshape(-1).double()
            sel = torch.nonzero(w > 0.05).reshape(-1)
            wts = w[sel]
            m = int(sel.numel())
        mean = self._mean(scale, sel, wts, fit)

        def apply(q: torch.Tensor) -> torch.Tensor:  # C q, C the covariance (times N)
            out = torch.zeros((m, q.shape[1]), dtype=torch.float64)
            for _, x in self._masked(scale, sel, wts, fit):
                xc = x - mean
                out += xc.T @ (xc @ q)
            parallel.all_reduce_sum([out])
            return out

        if m <= GRAM_MAX:
            gram = torch.zeros((m, m), dtype=torch.float64)
            for _, x in self._masked(scale, sel, wts, fit):
                xc = x - mean
                gram += xc.T @ xc
            parallel.all_reduce_sum([gram])
            # the leading r only (MRRR: a third of the time of all m at m = 4096)
            top = scipy.linalg.eigh(gram.numpy(), subset_by_index=[m - r, m - 1],
                                    driver="evr")[1]
            vecs = torch.from_numpy(top[:, ::-1].copy())
        else:
            vecs = _top_eigenvectors(apply, m, r)
        feats = torch.zeros((self.n, r), dtype=torch.float64)
        for rows, x in self._masked(scale, sel, wts):
            feats[torch.as_tensor(rows)] = (x - mean) @ vecs
        parallel.all_reduce_sum([feats])  # each row from one rank
        return feats.numpy()

    def labels(self, scale: float, mask: torch.Tensor | None, k: int, order: np.ndarray,
               seed: int = 0, fit: np.ndarray | None = None) -> np.ndarray:
        """:func:`~tomohet.methods.discovery.component_labels` of the maps low-passed at
        ``scale`` inside ``mask``, from the store. -> (N,) int64, the same on every
        rank. ``fit`` (N,) bool: components and k-means from those rows only (the
        others get -1)."""
        m = self.small**3 if mask is None else int((mask.reshape(-1) > 0.05).sum())
        r = max(1, min(k - 1, m, self.n - 1))
        feats = self.features(scale, mask, r, fit)
        if fit is None:
            return kmeans_labels(feats, k, order, seed)
        rows = np.nonzero(fit)[0]
        out = np.full(self.n, -1, dtype=np.int64)
        sub_order = np.argsort(np.argsort(order)[rows], kind="stable")
        out[rows] = kmeans_labels(feats[rows], k, sub_order, seed)
        return out

    def candidate_starts(self, masks: list[torch.Tensor], scale: float | Sequence[float],
                         halves: np.ndarray, order: np.ndarray, seed: int, box: int
                         ) -> list[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        """Candidate regions (small-grid ``masks`` from
        :func:`~tomohet.methods.regions.candidate_regions` without the significance
        cut, or :func:`~tomohet.methods.scale_candidates.candidates_over_scales`), up to
        the first that is no region (> 30% of the box), each with a two-class start from
        k-means on each half's own maps (for the held-out test of
        :mod:`tomohet.methods.region_test`) and one from all maps, on the maps low-passed
        at ``scale`` (one for all, or one per mask).
        -> [(full-box mask, fold labels (N,), labels (N,))]."""
        scales = ([float(scale)] * len(masks) if isinstance(scale, int | float)
                  else [float(s) for s in scale])
        if len(scales) != len(masks):
            raise ValueError(f"{len(masks)} candidate masks with {len(scales)} scales")
        out = []
        for r, s in zip(masks, scales, strict=True):
            if float(r.mean()) > 0.3:
                break
            fold = np.zeros(len(halves), dtype=np.int64)
            for f in (0, 1):
                part = self.labels(s, r, 2, order, seed, fit=halves == f)
                fold[halves == f] = part[halves == f]
            out.append((upsample_mask(r, box), fold, self.labels(s, r, 2, order, seed)))
        return out

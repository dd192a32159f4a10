"""Subtomograms and their 3D weights for the 3D VAE, in the reference frame.

Every particle becomes ``Y_n = sum H^* X`` and ``W_n = sum |H|^2`` on the working box's
rfft grid (:func:`tomohet.methods.linear.reference.iter_reference`, the path ``flow`` and
``nma`` use): tilt images are back-projected on the fly with their full pose, CTF and dose
filter (as ``ml3d`` does); RELION 3.1/4 and STOPGAP subtomograms are scattered through
their rotation with their own 3D CTF/wedge weight. Samples of a subtomogram whose weight
is below 1e-3 (its missing wedge) never enter ``Y`` or ``W``
(:func:`tomohet.data.prepare.prepare_subtomo_batch`), so nothing downstream -- the
encoder input or the loss -- can depend on them. ``Y_n ~ W_n V_n`` for the particle's
structure ``V_n``.

The working box ``small`` (:func:`~tomohet.methods.linear.reference.working_box`) holds
the band up to ``max_resolution_A``; ``Y`` is Fourier-cropped (which rescales a
transform by ``(small/box)^3``) and ``W`` is cropped without that factor, so that
``Y_small = W_small V_small`` still holds for the cropped structure.

``Y`` and ``W`` of every particle (12 bytes per rfft voxel: ~209 KB per particle on a
32-voxel working box) live on disk (:class:`~tomohet.methods.vae3d.store.RowStore`, a
temporary file freed at the end of the fit); batches and blocks are read as needed and
the set-wide sums and the weight median are streamed, so memory does not grow with N.
Under ``torch.distributed`` each rank back-projects only its blocks of particles into a
store the ranks share (:func:`build_data`), streams only those blocks
(:meth:`SubtomoData.blocks` with ``owned_only``) and the sums and histograms are added
over ranks (:func:`tomohet.parallel.all_reduce_sum`): the set-up passes cost 1 / ranks
of one rank's, and every rank gets one rank's consensus, noise, scales and floor up to
float64 rounding.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.base import ParticleSet
from tomohet.methods.linear.reference import (
    crop_rfft,
    iter_reference,
    subsample_rfft,
    working_box,
)
from tomohet.methods.vae3d.store import RowStore
from tomohet.physics.fourier import ft_to_volume, hermitian_weights_3d, radial_shell_index

__all__ = ["SubtomoData", "build_data", "weight_volume", "loss_mask", "weight_floor",
           "positive_median", "WEIGHT_FLOOR", "BLOCK"]

# a weight below this fraction of the median positive weight is treated as missing
WEIGHT_FLOOR = 1e-4
# particles per block of the set-up passes (block b is rank b % world's)
BLOCK = 64


@dataclass
class SubtomoData:
    """Reference-frame data of N particles on the working box ``small``, on disk
    (:class:`~tomohet.methods.vae3d.store.RowStore`): nothing per particle in memory."""

    y: RowStore  # complex64 rows (s, s, s//2+1): sum H^* X
    w: RowStore  # float32 rows (s, s, s//2+1): sum |H|^2 (wedge x CTF^2 x dose)
    box: int  # the particles' box
    small: int  # the working box
    pixel_size_A: float  # of the particles' box

    @property
    def n_particles(self) -> int:
        return len(self.y)

    @property
    def working_pixel_A(self) -> float:
        return self.pixel_size_A * self.box / self.small

    def rows(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y, W) of particles ``index`` as CPU tensors (len, s, s, s//2+1)."""
        idx = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        return torch.from_numpy(self.y.read(idx)), torch.from_numpy(self.w.read(idx))

    def blocks(self, size: int | None = None, owned_only: bool = False
               ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """(rows, Y, W) over the set in consecutive blocks of ``size`` (default
        :data:`BLOCK`) particles;
        ``owned_only``: only this rank's blocks (block ``b`` is rank ``b % world``'s,
        :func:`tomohet.parallel.owns`; all of them on one rank)."""
        step = size or BLOCK
        for block, start in enumerate(range(0, self.n_particles, step)):
            if owned_only and not parallel.owns(block):
                continue
            idx = np.arange(start, min(self.n_particles, start + step))
            yield (idx, *self.rows(idx))

    def close(self) -> None:
        """Free the disk space now (otherwise when the data are collected)."""
        self.y.close()
        self.w.close()


def build_data(particles: ParticleSet, max_resolution_A: float | None, batch_size: int,
               device: torch.device | str = "cpu", progress=None,
               folder: str | None = None) -> SubtomoData:
    """(Y, W) of every particle on the working box, written to disk block by block (in
    ``folder``, default ``TMPDIR``); per particle, independent of the others (so of row
    order and batch size).

    Under ``torch.distributed`` the ranks share one pair of files: each rank computes only
    its blocks of :data:`BLOCK` rows (block ``b`` is rank ``b % world``'s, the blocks its
    set-up passes read: :meth:`SubtomoData.blocks`) and writes them there, a barrier,
    then every rank reads any row (training takes its share of every keyed batch). The
    files live in ``folder`` (the run's checkpoint folder, which the ranks share) or,
    without one, in ``TMPDIR`` when every rank runs on this machine (``tomohet --ranks N``,
    one-node ``torchrun``). Nothing is left half-written on disk if a rank dies: on one
    machine the files are unlinked as soon as every rank has them open (before any row is
    written: the kernel frees them when the last rank closes or dies); across machines
    the names (random per run) stay until every rank has reopened them after the writes,
    and a later run in the same ``folder`` removes any a dead run left. Across machines
    without a ``folder``, or when some rank cannot open the files (``folder`` not
    shared), each rank computes every row into its own anonymous file, as on one rank.
    """
    o = particles.optics
    small = working_box(o.box, o.pixel_size_A, max_resolution_A)
    n, h = particles.n_particles, small // 2 + 1
    shape = (small, small, h)
    local = _one_machine()
    where = folder or (tempfile.gettempdir() if local else None)
    shared = _shared_stores(n, shape, where, local, folder is not None) \
        if parallel.world() > 1 and where is not None else None
    if shared is None:
        y = RowStore(n, shape, np.complex64, folder)
        w = RowStore(n, shape, np.float32, folder)
    else:
        y, w, paths = shared
    # this rank's blocks of BLOCK rows: those its set-up passes read (blocks(owned_only))
    rows = parallel.owned_rows(n, BLOCK) if shared is not None else None
    for idx, yb, wb in iter_reference(particles, batch_size, device, rows=rows):
        ys = crop_rfft(subsample_rfft(yb), o.box, small)
        ws = crop_rfft(subsample_rfft(wb), o.box, small) / (small / o.box) ** 3
        y.write(idx, ys.to(torch.complex64).cpu().numpy())
        w.write(idx, (ws.real if ws.is_complex() else ws).float().clamp_min(0).cpu().numpy())
        if progress is not None:
            progress(len(idx))
    if shared is not None and local:
        parallel.barrier()  # one machine, one page cache: every rank's rows are readable
    elif shared is not None:
        for store in (y, w):
            store.flush()
            store.close()
        parallel.barrier()  # every rank's rows are on disk: open them afresh to read
        y, w = (RowStore(n, shape, dt, path=p, create=False)
                for p, dt in zip(paths, _DTYPES, strict=True))
        parallel.barrier()
        if parallel.is_main():
            for path in paths:  # the open files stay readable; nothing is left behind
                os.unlink(path)
    return SubtomoData(y=y, w=w, box=o.box, small=small, pixel_size_A=float(o.pixel_size_A))


_DTYPES = (np.complex64, np.float32)  # of Y and W


def _one_machine() -> bool:
    """Whether every rank runs on this machine (torchrun's and :func:`tomohet.parallel.
    spawn`'s ``LOCAL_WORLD_SIZE`` equals the number of ranks)."""
    return os.environ.get("LOCAL_WORLD_SIZE", "") == str(parallel.world())


def _shared_stores(n: int, shape: tuple[int, ...], folder: str, local: bool, own_folder: bool
                   ) -> tuple[RowStore, RowStore, list[str]] | None:
    """(Y store, W store, paths): one pair of files in ``folder`` that rank 0 makes (at a
    name drawn by rank 0 for this run) and every rank opens (a collective); None on every
    rank when some rank cannot open them (``folder`` not shared), the files removed.
    ``local``: the names are removed as soon as every rank has the files open.
    ``own_folder``: ``folder`` is this run's (not ``TMPDIR``): rank 0 first removes the
    files of a run of it that died."""
    token = torch.tensor([secrets.randbits(62) if parallel.is_main() else 0])
    parallel.broadcast([token])
    paths = [str(Path(folder, f".vae3d_rows_{int(token):016x}_{k}.bin")) for k in "yw"]
    if parallel.is_main():
        if own_folder:
            for old in Path(folder).glob(".vae3d_*rows*.bin"):
                old.unlink(missing_ok=True)
        for path, dt in zip(paths, _DTYPES, strict=True):
            RowStore(n, shape, dt, path=path).close()  # sized before any rank opens it
    parallel.barrier()
    opened: list[RowStore] = []
    try:
        for path, dt in zip(paths, _DTYPES, strict=True):
            opened.append(RowStore(n, shape, dt, path=path, create=False))
    except OSError:
        pass
    ok = torch.tensor([len(opened) == len(paths)], dtype=torch.int64)
    parallel.all_reduce_sum([ok])  # returns once every rank has tried to open them
    everyone = int(ok) == parallel.world()
    if parallel.is_main() and (local or not everyone):
        for path in paths:
            os.unlink(path)
    if not everyone:
        for store in opened:
            store.close()
        return None
    return opened[0], opened[1], paths


def loss_mask(w: torch.Tensor, floor: float) -> torch.Tensor:
    """Samples the loss sees: weight above ``floor`` and inside the Nyquist sphere of the
    working box. w (..., s, s, s//2+1) -> bool of the same shape."""
    s = w.shape[-3]
    inside = radial_shell_index(s, 3, device=w.device) < s // 2
    return (w > floor) & inside


def weight_floor(data: SubtomoData) -> float:
    """:data:`WEIGHT_FLOOR` times the median positive weight of the set (the lower
    median, as :func:`torch.median`), found exactly in two passes over the blocks (each
    rank its own; a collective under ``torch.distributed``)."""
    med = positive_median(lambda: (w for _idx, _y, w in data.blocks(owned_only=True)))
    return float(WEIGHT_FLOOR * (1.0 if med is None else med))


def positive_median(blocks: Callable[[], Iterable[torch.Tensor]]) -> float | None:
    """Lower median of the positive values of the float32 tensors that ``blocks()``
    yields (called twice: two passes), None without any. Positive float32
    numbers order as their bit patterns: a histogram of the high 16 bits finds the bin of
    the median, a histogram of the low 16 bits inside that bin the value. The histograms
    are counts, summed over ranks (exact): under ``torch.distributed`` every rank passes
    its own share of the values and all get the median of the union."""
    hi = torch.zeros(1 << 15, dtype=torch.int64)
    for b in blocks():
        bits = b[b > 0].float().contiguous().view(torch.int32)
        hi += torch.bincount((bits >> 16).long(), minlength=1 << 15)
    parallel.all_reduce_sum([hi])
    total = int(hi.sum())
    if total == 0:
        return None
    rank = (total - 1) // 2
    cum = torch.cumsum(hi, 0)
    top = int(torch.searchsorted(cum, torch.tensor(rank), right=True))
    rank -= int(cum[top - 1]) if top > 0 else 0
    lo = torch.zeros(1 << 16, dtype=torch.int64)
    for b in blocks():
        bits = b[b > 0].float().contiguous().view(torch.int32)
        lo += torch.bincount((bits[(bits >> 16) == top] & 0xFFFF).long(), minlength=1 << 16)
    parallel.all_reduce_sum([lo])
    low = int(torch.searchsorted(torch.cumsum(lo, 0), torch.tensor(rank), right=True))
    return float(torch.tensor([(top << 16) | low], dtype=torch.int32).view(torch.float32))


def weight_volume(w: torch.Tensor) -> torch.Tensor:
    """rfft-layout weights (..., s, s, s//2+1) -> the full, centred Fourier volume
    (..., s, s, s) (Friedel mates filled by ``W(-q) = W(q)``), the encoder's second
    channel."""
    s = w.shape[-3]
    h = w.shape[-1]
    full = torch.zeros((*w.shape[:-1], s), dtype=w.dtype, device=w.device)
    full[..., :h] = w
    rest = torch.arange(h, s, device=w.device)  # x index k > s/2: the mate at -k
    neg = (-torch.arange(s, device=w.device)) % s
    mate = w.index_select(-3, neg).index_select(-2, neg).index_select(-1, s - rest)
    full[..., h:] = mate
    return torch.fft.fftshift(full, dim=(-3, -2, -1))


def consensus_and_noise(data: SubtomoData, floor: float, reg: float = 1e-3
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Consensus ``mu = sum Y / (sum W + reg mean W)`` (rfft, working box) and the noise
    power per shell ``s2(k) = < |Y - W mu|^2 / W >`` over the samples the loss sees
    (shells without any get the mean of the others). Each rank streams its own blocks;
    the sums are added over ranks (a collective under ``torch.distributed``)."""
    s = data.small
    sy = torch.zeros((s, s, s // 2 + 1), dtype=torch.complex128)
    sw = torch.zeros((s, s, s // 2 + 1), dtype=torch.float64)
    for _idx, y, w in data.blocks(owned_only=True):
        sy += y.sum(0)
        sw += w.sum(0)
    parallel.all_reduce_sum([sy, sw])
    sy, sw = sy.to(torch.complex64), sw.float()
    scale = sw[sw > 0].mean() if bool((sw > 0).any()) else torch.tensor(1.0)
    mu = sy / (sw + reg * scale)
    shell = radial_shell_index(s, 3)
    herm = hermitian_weights_3d(s)
    n_sh = s // 2 + 1
    num = torch.zeros(n_sh, dtype=torch.float64)
    den = torch.zeros(n_sh, dtype=torch.float64)
    for _idx, y, w in data.blocks(owned_only=True):
        m = loss_mask(w, floor)
        r = (y - w * mu).abs() ** 2 / w.clamp_min(floor)
        val = (r * m * herm).double()
        cnt = (m * herm).double()
        sh = shell.clamp_max(n_sh - 1).expand_as(val)
        num.index_add_(0, sh.reshape(-1), val.reshape(-1))
        den.index_add_(0, sh.reshape(-1), cnt.reshape(-1))
    parallel.all_reduce_sum([num, den])
    ok = den > 0
    s2 = torch.where(ok, num / den.clamp_min(1), torch.zeros_like(num))
    fill = s2[ok & (s2 > 0)].mean() if bool((ok & (s2 > 0)).any()) else torch.tensor(1.0)
    s2 = torch.where(s2 > 0, s2, fill)
    return mu, s2.float()


def encoder_scales(data: SubtomoData, mu: torch.Tensor, filt: torch.Tensor
                   ) -> tuple[float, float]:
    """RMS of the (filtered) residual volumes ``ift(filt (Y - W mu))`` and mean weight
    over the set: the encoder divides its two channels by them. Each rank streams its
    own blocks; the sums are added over ranks (a collective under ``torch.distributed``)."""
    acc = np.zeros(4)  # sum r^2, voxels of r, sum w, voxels of w (counts exact < 2^53)
    for _idx, y, w in data.blocks(owned_only=True):
        r = ft_to_volume((y - w * mu) * filt, data.small)
        acc += [float((r.double() ** 2).sum()), r.numel(), float(w.double().sum()), w.numel()]
    parallel.all_reduce_sum([acc])
    ss, n, sw, nw = (float(v) for v in acc)
    rms = float(np.sqrt(ss / max(n, 1))) or 1.0
    wm = sw / max(nw, 1) or 1.0
    return rms, wm

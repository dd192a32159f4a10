"""Streamed per-input moments for the encoders' input scales, summed over ranks.

The encoders divide each network input by its standard deviation over the set
(:meth:`~tomohet.methods.vae.encoders.BackprojectEncoder.calibrate`). Holding every
particle's inputs to take that std costs N x tilts x inputs floats (~1.6 GB at 100k
particles for the tilt encoder); here each rank adds its own particles' rows into float64
``count``, ``sum`` and ``sum of squares`` per input, the three are summed over ranks
(:func:`tomohet.parallel.all_reduce_sum`), and every rank takes the same std from the
same totals. Memory is flat in N and the result is that of one rank on all particles
up to float64 rounding, whatever the batch size or the number of ranks.

The variance ``(S2 - S1^2 / n) / (n - 1)`` from raw sums loses about ``1e-16 (mean /
std)^2`` relative precision in float64: nothing for the encoders' inputs, residuals
whose mean is a small fraction of their spread.
"""

from __future__ import annotations

import torch

from tomohet import parallel

__all__ = ["StreamedMoments", "inverse_std_scale"]


class StreamedMoments:
    """float64 count, sum and sum of squares of each of ``n`` inputs over rows added in
    any order and in any blocks (:meth:`add`), summed over ranks by :meth:`reduce`."""

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(n, dtype=torch.float64, device=device)
        self.reduced = False

    def add(self, rows: torch.Tensor) -> None:
        """Add rows (M, n) (or (M,) when n is 1); M may be 0."""
        x = rows.detach().to(self.sum.device, torch.float64).reshape(len(rows), len(self.sum))
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)

    def reduce(self) -> StreamedMoments:
        """Sum the moments over ranks, once (no-op without a process group): under
        ``torch.distributed`` every rank calls it after adding its own rows."""
        if not self.reduced:
            parallel.all_reduce_sum([self.count, self.sum, self.sumsq])
            self.reduced = True
        return self

    @property
    def n(self) -> int:
        return int(self.count)

    def mean(self) -> torch.Tensor:
        """(n,) float64 mean of each input (0 without rows)."""
        return self.sum / self.count.clamp_min(1)

    def std(self) -> torch.Tensor:
        """(n,) float64 sample standard deviation (``n - 1`` denominator, as
        :meth:`torch.Tensor.std`); needs at least two rows."""
        if self.n < 2:
            raise ValueError(f"a standard deviation needs >= 2 rows, got {self.n}")
        var = (self.sumsq - self.sum * self.sum / self.count) / (self.count - 1)
        return var.clamp_min(0).sqrt()


def inverse_std_scale(moments: StreamedMoments) -> torch.Tensor:
    """Per-input scale ``1 / std`` (float32), each std floored at 1e-3 x their mean
    (+1e-12) so that a constant input is not blown up; all ones with fewer than two
    rows."""
    if moments.n < 2:
        return torch.ones(moments.sum.shape, device=moments.sum.device)
    std = moments.std()
    return (1.0 / std.clamp_min(float(std.mean()) * 1e-3 + 1e-12)).float()

"""Compacted batches kept across E/M passes within a memory budget (issue 14).

With fixed poses (no local search) a batch's kept pixels, their data, transfer functions
and trilinear plan (:class:`~tomohet.physics.compact.CompactBatch`) are the same in every
pass, so reading, transforming and planning them once is enough. Batches are cached, in
the order passes first meet them, until the budget is used; the rest are rebuilt each
pass. A pass limited to ``current_size`` takes the cached pixels at or below its shell,
in their stored order: the same pixels, values and order as a batch built under the
limit, so results are identical with and without the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tomohet.physics.compact import CompactBatch, subset_batch

__all__ = ["GeometryCache", "CachedBatch"]

# a compacted batch and, with per-tilt weights, its tilt weights (B, T)
CachedBatch = tuple[CompactBatch, torch.Tensor | None]


def _nbytes(item: CachedBatch) -> int:
    cb, tilt_w = item
    total = sum(v.numel() * v.element_size() for v in vars(cb).values()
                if isinstance(v, torch.Tensor))
    return total + (0 if tilt_w is None else tilt_w.numel() * tilt_w.element_size())


class GeometryCache:
    """Batches by key (e.g. the first particle position of the batch), full mask."""

    def __init__(self, budget_mb: float) -> None:
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self._store: dict[int, CachedBatch] = {}

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: int, build: Callable[[], CachedBatch], shells: torch.Tensor,
            limit: int | None) -> CachedBatch:
        """The batch ``key`` at shells <= ``limit`` (None: all). ``build`` makes it
        without any shell limit; ``shells`` (D, Dh) or (D, D, Dh): each rfft pixel's
        radial shell."""
        item = self._store.get(key)
        if item is None:
            item = build()
            size = _nbytes(item)
            if self.used + size <= self.budget:
                self._store[key] = item
                self.used += size
        cb, tilt_w = item
        if limit is None:
            return cb, tilt_w
        keep = shells.reshape(-1).index_select(0, cb.pixel) <= limit
        return subset_batch(cb, keep.nonzero(as_tuple=True)[0]), tilt_w

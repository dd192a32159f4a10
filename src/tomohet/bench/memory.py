"""Wall time and peak memory of a block of code, for the leaderboard's resource columns.

Three views of memory, because none sees everything: tracemalloc (Python and numpy
allocations), the resident size sampled every 20 ms (torch CPU tensors included, even
those freed before the block ends) and the CUDA allocator's peak on a GPU.
"""

from __future__ import annotations

import resource
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["measure"]


def _max_rss_MB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_MB() -> float | None:
    """Resident size now (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _RssSampler(threading.Thread):
    """Samples the resident size every ``interval`` s: catches torch CPU allocations that
    tracemalloc does not see and that are freed before the block ends."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.start_MB = _current_rss_MB()
        self.peak_MB = self.start_MB or 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            now = _current_rss_MB()
            if now is not None:
                self.peak_MB = max(self.peak_MB, now)

    def finish(self) -> float:
        """Stop; -> peak growth of the resident size over the start (MB)."""
        self._stop_event.set()
        self.join()
        now = _current_rss_MB()
        if self.start_MB is None or now is None:
            return 0.0
        return max(self.peak_MB, now) - self.start_MB


@contextmanager
def measure(device: torch.device | None = None) -> Iterator[dict[str, float]]:
    """Wall time and peak memory of the block -> dict filled on exit.

    ``py_peak_MB``: tracemalloc peak (Python + numpy allocations); ``rss_growth_MB``: peak
    growth of the resident size (sampled every 20 ms; torch CPU tensors included);
    ``rss_max_MB``: the process's high-water resident size (``ru_maxrss``);
    ``gpu_peak_MB``: torch CUDA peak; ``peak_mem_MB``: the largest of the Python peak, the
    RSS growth and the GPU peak.
    """
    stats: dict[str, float] = {}
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sampler = _RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    try:
        yield stats
    finally:
        wall = time.perf_counter() - t0
        growth = sampler.finish()
        py_peak = tracemalloc.get_traced_memory()[1] / 2**20
        if not was_tracing:
            tracemalloc.stop()
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else 0.0
        stats.update(wall_s=wall, peak_mem_MB=max(py_peak, growth, gpu), py_peak_MB=py_peak,
                     rss_growth_MB=growth, rss_max_MB=_max_rss_MB(), gpu_peak_MB=gpu)



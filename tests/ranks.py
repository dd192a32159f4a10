"""The body every spawned test rank runs (:func:`tomohet.parallel.spawn` targets)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tomohet import parallel


def as_rank(work: Callable[[Path], None], out: Path) -> None:
    """One thread, join the group torchrun's environment describes, ``work(out)``, wait
    for every rank, leave the group (also on failure)."""
    torch.set_num_threads(1)
    assert parallel.init_from_env()
    try:
        work(out)
        parallel.barrier()
    finally:
        parallel.shutdown()

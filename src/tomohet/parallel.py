"""Scale-out on ``torch.distributed``: process group, particle shards, sum reductions.

One process per rank, started by ``torchrun`` (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT`` in the environment) or by ``tomohet --ranks N`` (gloo
ranks on one machine, :func:`spawn`). gloo on CPU, NCCL when the device is CUDA.

What a rank computes never depends on the number of ranks:

* work is cut into *blocks* that do not depend on the rank count (the EM batches, which
  are consecutive runs of the particles in their keyed order,
  :func:`tomohet.data.keys.keyed_order`; fixed row blocks for the linear methods), and
  block ``b`` belongs to rank ``b % world`` (:func:`shard`, :func:`owns`);
* each block's result is what one rank would compute for it; per-particle results
  (posteriors, scores, features) land in rows that no other rank writes, so their sum over
  ranks is exact;
* sums over particles (back-projections, noise spectra, log-likelihoods, gradients) are
  added in float64 across ranks (:func:`all_reduce_sum`), so a result differs from one
  rank's only by the float32 rounding of each rank's own partial sums (~1e-7 relative).

Every collective waits at most the group's timeout (``TOMOHET_DIST_TIMEOUT`` seconds,
default 1800): a rank that died or hangs makes every other rank stop with
:class:`RankFailure`, which names the rank and says that the run resumes from its last
checkpoint. Without a process group (one rank) every function here is a no-op.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "RankFailure", "init_from_env", "shutdown", "is_initialized", "world", "rank",
    "is_main", "barrier", "shard", "owns", "all_reduce_sum", "all_reduce_grads",
    "broadcast", "spawn", "free_port", "default_timeout", "owned_rows", "ROW_BLOCK",
    "REDUCE_CHUNK",
]

T = TypeVar("T")
# rows per block of the row-sharded linear methods (tomohet.methods.linear)
ROW_BLOCK = 1024
# values per all-reduce message (float64: 64 MB)
REDUCE_CHUNK = 1 << 23
_TIMEOUT_ENV = "TOMOHET_DIST_TIMEOUT"


class RankFailure(RuntimeError):
    """A collective did not complete: another rank died, hangs or failed."""


def default_timeout() -> float:
    """Seconds a collective may wait (``TOMOHET_DIST_TIMEOUT``, default 1800)."""
    raw = os.environ.get(_TIMEOUT_ENV, "1800")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{_TIMEOUT_ENV}={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ValueError(f"{_TIMEOUT_ENV}={raw!r} must be > 0 seconds")
    return value


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes outputs and checkpoints (rank 0)."""
    return rank() == 0


def init_from_env(device: str | torch.device | None = None,
                  timeout_s: float | None = None) -> bool:
    """Join the process group described by the environment (torchrun's ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); -> whether one is running.

    ``WORLD_SIZE`` absent or 1: nothing to join (False). The backend is NCCL when
    ``device`` is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    if is_initialized():
        return True
    n = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if n <= 1:
        return False
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"WORLD_SIZE={n} but {var} is not set: start the ranks with "
                             "torchrun or tomohet --ranks N")
    dev = torch.device(device) if device is not None else None
    backend = "nccl" if dev is not None and dev.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(seconds=timeout_s or default_timeout())
    dist.init_process_group(backend=backend, timeout=timeout)
    return True


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


def _fail(what: str, exc: BaseException) -> RankFailure:
    return RankFailure(
        f"rank {rank()} of {world()}: {what} did not complete ({' '.join(str(exc).split())[:300]})"
        ": another rank died, hangs or failed; rerun the same command to resume from the "
        "last checkpoint")


def barrier(timeout_s: float | None = None) -> None:
    """Wait for every rank; :class:`RankFailure` after ``timeout_s`` (default: the
    group's timeout)."""
    if not is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            t = datetime.timedelta(seconds=timeout_s or default_timeout())
            dist.monitored_barrier(timeout=t, wait_all_ranks=True)
        else:
            dist.barrier()
    except RuntimeError as exc:
        raise _fail("barrier", exc) from exc


def shard(items: Sequence[T]) -> list[T]:
    """This rank's blocks: block ``b`` belongs to rank ``b % world``."""
    w, r = world(), rank()
    return [it for b, it in enumerate(items) if b % w == r]


def owns(block: int) -> bool:
    """Whether block number ``block`` is this rank's."""
    return block % world() == rank()


def owned_rows(n: int, block: int | None = None) -> np.ndarray:
    """Rows ``0..n-1`` of this rank's blocks of ``block`` (default :data:`ROW_BLOCK`)
    consecutive rows: block ``b`` belongs to rank ``b % world``."""
    size = block or ROW_BLOCK
    rows = np.arange(n)
    return rows if world() == 1 else rows[(rows // size) % world() == rank()]


def _device_for_backend(t: torch.Tensor) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensors: Iterable[torch.Tensor | np.ndarray]) -> None:
    """Sum each tensor / array over ranks, in place, adding in float64 (complex: real and
    imaginary parts as float64). Integer and bool tensors are summed exactly as int64.
    Sent in slices of :data:`REDUCE_CHUNK` values, so the float64 copies stay small."""
    if not is_initialized():
        return
    for t in tensors:
        # numpy arrays through a view of their memory, so that the sum lands there
        x = torch.from_numpy(t) if isinstance(t, np.ndarray) else t
        view = torch.view_as_real(x) if x.is_complex() else x
        work = view if view.is_contiguous() else view.contiguous()
        flat = work.detach().reshape(-1)
        wide = torch.float64 if flat.is_floating_point() else torch.int64
        dev = _device_for_backend(flat)
        for s in range(0, flat.numel(), REDUCE_CHUNK):
            part = flat[s : s + REDUCE_CHUNK].to(dev, wide)
            try:
                dist.all_reduce(part, op=dist.ReduceOp.SUM)
            except RuntimeError as exc:
                raise _fail("all_reduce", exc) from exc
            with torch.no_grad():
                flat[s : s + REDUCE_CHUNK].copy_(part)
        if work is not view:
            with torch.no_grad():
                view.copy_(work)


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Sum the gradients of ``module``'s parameters over ranks (float64 adds); a
    parameter without a gradient on this rank counts as zero (DistributedDataParallel's
    reduction, for models trained through methods other than ``forward``)."""
    if not is_initialized():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int64)
    all_reduce_sum([has])  # a parameter no rank has a gradient for keeps None
    for p, n in zip(params, has.tolist(), strict=True):
        if n and p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_sum([p.grad for p in params if p.grad is not None])


def broadcast(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Copy ``src``'s tensors to every rank, in place."""
    if not is_initialized():
        return
    for t in tensors:
        dev = _device_for_backend(t)
        buf = torch.view_as_real(t) if t.is_complex() else t
        tmp = buf.detach().to(dev).contiguous()
        try:
            dist.broadcast(tmp, src=src)
        except RuntimeError as exc:
            raise _fail("broadcast", exc) from exc
        with torch.no_grad():
            buf.copy_(tmp.to(buf.device))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a local group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(local_rank: int, n: int, port: int, fn: Callable[..., Any],
             args: tuple[Any, ...], timeout_s: float | None) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank),
                       "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if timeout_s is not None:
        os.environ[_TIMEOUT_ENV] = str(timeout_s)
    fn(*args)


def spawn(fn: Callable[..., Any], n_ranks: int, args: tuple[Any, ...] = (),
          timeout_s: float | None = None) -> None:
    """Run ``fn(*args)`` in ``n_ranks`` processes on this machine, each with torchrun's
    environment for a local gloo group (``fn`` calls :func:`init_from_env`). Raises when
    a rank fails (``torch.multiprocessing.ProcessRaisedException``)."""
    import torch.multiprocessing as mp

    if n_ranks < 1:
        raise ValueError(f"--ranks must be >= 1, got {n_ranks}")
    port = free_port()
    mp.start_processes(_spawned, args=(n_ranks, port, fn, args, timeout_s), nprocs=n_ranks,
                       join=True, start_method="spawn")

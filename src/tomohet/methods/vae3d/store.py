"""Per-particle arrays of one shape kept on disk, read and written by row.

:class:`RowStore` holds N rows of a fixed shape and dtype in an anonymous temporary file
(:func:`tempfile.TemporaryFile`, in ``TMPDIR``: unlinked from the start, so the space is
freed when the store is closed or collected, or when the process dies) and moves rows
with ``pread`` / ``pwrite``. Nothing is memory-mapped: reading a batch brings that batch
into memory and nothing else, so the resident size does not grow with N (the file's
pages sit in the kernel's page cache, which is not the process's memory and is dropped
under pressure).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import numpy as np

__all__ = ["RowStore"]


class RowStore:
    """N rows of shape ``shape`` and dtype ``dtype`` in a temporary file (zeros at first).

    ``path``: a named file instead, shared by processes (ranks): ``create`` makes it (one
    process, before the others open it); the others open it as it is. Whoever created it
    removes it (:func:`os.unlink`) once every process has it open.
    """

    def __init__(self, n: int, shape: tuple[int, ...], dtype: np.dtype | type,
                 folder: str | None = None, path: str | None = None,
                 create: bool = True) -> None:
        self.n = int(n)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if path is None:
            self._file = tempfile.TemporaryFile(prefix="tomohet_rows_", dir=folder)
        else:
            self._file = open(path, "w+b" if create else "r+b")  # noqa: SIM115 (closed in close())
        if path is None or create:
            self._file.truncate(self.n * self.row_bytes)  # sparse: zeros until written
        elif os.fstat(self._file.fileno()).st_size != self.n * self.row_bytes:
            raise OSError(f"{path}: {os.fstat(self._file.fileno()).st_size} bytes, expected "
                          f"{self.n * self.row_bytes}")

    def flush(self) -> None:
        """Push what this process wrote to the file system (before others read it)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        """Bytes on disk (none of them in memory)."""
        return self.n * self.row_bytes

    def close(self) -> None:
        self._file.close()

    def _runs(self, rows: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row, run length, positions in ``rows``) of runs of consecutive rows."""
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        if len(srt) and (srt[0] < 0 or srt[-1] >= self.n):
            raise IndexError(f"rows outside 0..{self.n - 1}")
        breaks = np.nonzero(np.diff(srt) != 1)[0] + 1
        for part in np.split(np.arange(len(srt)), breaks):
            if len(part):
                yield int(srt[part[0]]), len(part), order[part]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) -> (len(rows), *shape)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *self.shape), dtype=self.dtype)
        fd = self._file.fileno()
        uniq, inverse = np.unique(idx, return_inverse=True)
        got = np.empty((len(uniq), *self.shape), dtype=self.dtype)
        for first, count, pos in self._runs(uniq):
            size = count * self.row_bytes
            buf = os.pread(fd, size, first * self.row_bytes)
            if len(buf) != size:
                raise OSError(f"short read from the row store ({len(buf)} of {size} bytes)")
            got[pos] = np.frombuffer(buf, dtype=self.dtype).reshape(count, *self.shape)
        out[:] = got[inverse.reshape(-1)]
        return out

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Store ``values`` (len(rows), *shape) at rows ``rows`` (distinct)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        vals = np.ascontiguousarray(values, dtype=self.dtype).reshape(len(idx), *self.shape)
        fd = self._file.fileno()
        for first, _count, pos in self._runs(idx):
            data = np.ascontiguousarray(vals[pos]).tobytes()
            if os.pwrite(fd, data, first * self.row_bytes) != len(data):
                raise OSError("short write to the row store (disk full?)")

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows ``first .. first + size - 1``) over the whole store."""
        for start in range(0, self.n, size):
            yield start, self.read(np.arange(start, min(self.n, start + size)))

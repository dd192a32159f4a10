"""Lazy, memory-mapped image and volume sources.

An :class:`ImageSource` is a flat list of 2D images, each addressed by a file and a frame
index inside that file (``idx@stack.mrcs`` in STAR terms). Files are opened with
``mrcfile.mmap`` on first use, a bounded number at a time, so data sets larger than RAM
stream from disk. float16 (MRC mode 12) data are converted to float32 on read.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import mrcfile
import numpy as np
import torch

from tomohet.physics.extract import extract_boxes

__all__ = [
    "ImageSource", "VolumeSource", "ArrayImageSource", "ArrayVolumeSource", "open_mrc",
    "DataError", "ExtractedImageSource",
]


class DataError(ValueError):
    """Bad input data: the message names the file and the field."""


def open_mrc(path: str | os.PathLike[str]) -> mrcfile.mrcmmap.MrcMemmap:
    """Memory-map an MRC file read-only with a clear error on missing or corrupt files."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a folder (directory), not an MRC file")
    if p.stat().st_size < 1024:
        raise DataError(f"{p}: too small to be an MRC file ({p.stat().st_size} bytes)")
    try:
        with warnings.catch_warnings():  # permissive mode warns; the callers check sizes
            warnings.simplefilter("ignore")
            return mrcfile.mmap(p, mode="r", permissive=True)
    except Exception as exc:  # mrcfile raises ValueError and others
        raise DataError(f"{p}: not a readable MRC file ({exc})") from exc


class _HandleCache:
    """At most ``max_open`` memory-mapped files, least recently used closed first."""

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, mrcfile.mrcmmap.MrcMemmap] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path].data
        handle = open_mrc(path)
        data = handle.data
        if data is None:
            handle.close()
            raise DataError(f"{path}: MRC file has no data block")
        expected = int(handle.header.nx) * int(handle.header.ny) * int(handle.header.nz)
        if data.size != expected:
            handle.close()
            raise DataError(f"{path}: truncated MRC file (header says {expected} values)")
        if data.dtype.kind == "c":
            handle.close()
            raise DataError(f"{path}: MRC mode {int(handle.header.mode)} holds complex "
                            "values; real images are needed")
        nbytes = 1024 + int(handle.header.nsymbt) + data.nbytes
        if os.path.getsize(path) != nbytes:
            handle.close()
            raise DataError(f"{path}: file size {os.path.getsize(path)} bytes does not match "
                            f"the MRC header ({nbytes} bytes): wrong mode or shape?")
        self._open[path] = handle
        if len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return data

    def close(self) -> None:
        for h in self._open.values():
            h.close()
        self._open.clear()


class ImageSource:
    """Lazy 2D images: ``files[file_index[i]]`` frame ``frame[i]`` is image ``i``."""

    def __init__(
        self, files: Sequence[str], file_index: np.ndarray, frame: np.ndarray, box: int
    ) -> None:
        self.files = [str(f) for f in files]
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.frame = np.asarray(frame, dtype=np.int64)
        self.box = int(box)
        self._cache = _HandleCache()

    def __len__(self) -> int:
        return len(self.frame)

    def check(self) -> None:
        """Open every file once: existence, box size and frame counts are verified."""
        counts = np.bincount(self.file_index, minlength=len(self.files))
        for fi, path in enumerate(self.files):
            if counts[fi] == 0:
                continue
            data = self._cache.get(path)
            stack = data if data.ndim == 3 else data[None]
            self._check_stack(path, stack, int(self.frame[self.file_index == fi].max()))

    def _check_stack(self, path: str, stack: np.ndarray, top: int) -> None:
        if stack.shape[-1] != self.box or stack.shape[-2] != self.box:
            raise DataError(f"{path}: images are {stack.shape[-2]}x{stack.shape[-1]} px but "
                            f"the metadata box size is {self.box}")
        if top >= stack.shape[0]:
            raise DataError(f"{path}: image {top + 1} requested but the stack has "
                            f"{stack.shape[0]}")

    def read(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as float32 (len, D, D); index -1 gives a zero image."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.zeros((len(idx), self.box, self.box), dtype=np.float32)
        valid = idx >= 0
        if valid.any():
            fidx = self.file_index[idx[valid]]
            frames = self.frame[idx[valid]]
            pos = np.nonzero(valid)[0]
            for fi in np.unique(fidx):
                sel = fidx == fi
                data = self._cache.get(self.files[fi])
                stack = data if data.ndim == 3 else data[None]
                self._check_stack(self.files[fi], stack, int(frames[sel].max()))
                out[pos[sel]] = stack[frames[sel]].astype(np.float32)
        if not np.isfinite(out).all():
            bad = idx[~np.isfinite(out).all(axis=(1, 2))][0]
            raise DataError(
                f"{self.files[self.file_index[bad]]}: frame {self.frame[bad] + 1} has NaN/inf"
            )
        return torch.from_numpy(out)

    def chunks(self, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (indices, images) in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, self.read(idx)

    def close(self) -> None:
        self._cache.close()


class ArrayImageSource(ImageSource):
    """In-memory images (for tests and freshly simulated data)."""

    def __init__(self, images: np.ndarray | torch.Tensor) -> None:
        arr = np.asarray(images, dtype=np.float32)
        super().__init__(["<memory>"], np.zeros(len(arr), np.int64), np.arange(len(arr)),
                         arr.shape[-1])
        self._array = arr

    def check(self) -> None:  # nothing on disk
        return None

    def read(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        idx = np.asarray(indices, dtype=np.int64)
        out = np.zeros((len(idx), self.box, self.box), dtype=np.float32)
        ok = idx >= 0
        out[ok] = self._array[idx[ok]]
        return torch.from_numpy(out)


class ExtractedImageSource(ImageSource):
    """Particle boxes cut on the fly from tilt images; no particle stacks on disk.

    Image ``i`` is the ``box`` x ``box`` box centred at ``centre_px[i]`` (x, y; float
    tilt-image pixels, see :mod:`tomohet.physics.extract`) of frame ``frame[i]`` of
    ``files[file_index[i]]`` (a tilt-series stack, or a single 2D tilt image). The files
    are memory-mapped; only the windows are read. Box pixels outside the tilt image hold
    that tilt image's mean. ``scale``: box pixel size in tilt-image pixels (binned
    boxes from unbinned tilt series are Fourier-cropped).
    """

    def __init__(self, files: Sequence[str], file_index: np.ndarray, frame: np.ndarray,
                 box: int, centre_px: np.ndarray, scale: float = 1.0) -> None:
        super().__init__(files, file_index, frame, box)
        self.scale = float(scale)
        self.centre_px = np.asarray(centre_px, dtype=np.float64).reshape(-1, 2)
        if len(self.centre_px) != len(self.frame):
            raise ValueError(f"{len(self.centre_px)} centres for {len(self.frame)} images")
        self._means: dict[tuple[int, int], float] = {}

    def _tilt(self, fi: int, frame: int) -> np.ndarray:
        data = self._cache.get(self.files[fi])
        stack = data if data.ndim == 3 else data[None]
        if frame >= stack.shape[0]:
            raise DataError(f"{self.files[fi]}: tilt image {frame + 1} requested but the "
                            f"tilt series has {stack.shape[0]}")
        return stack[frame]

    def check(self) -> None:
        """Open every tilt series once: existence and frame counts are verified."""
        for fi in np.unique(self.file_index):
            self._tilt(int(fi), int(self.frame[self.file_index == fi].max()))

    def tilt_mean(self, fi: int, frame: int) -> float:
        """Mean of one tilt image (the fill value outside it), computed once."""
        key = (int(fi), int(frame))
        if key not in self._means:
            self._means[key] = float(np.mean(self._tilt(*key), dtype=np.float64))
        return self._means[key]

    def read(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Boxes ``indices`` as float32 (len, D, D); index -1 gives a zero image."""
        idx = np.asarray(indices, dtype=np.int64)
        out = torch.zeros((len(idx), self.box, self.box), dtype=torch.float32)
        pos = np.nonzero(idx >= 0)[0]
        if len(pos):
            keys = self.file_index[idx[pos]] * (int(self.frame.max()) + 1) + self.frame[idx[pos]]
            for key in np.unique(keys):
                sel = pos[keys == key]
                fi, frame = int(self.file_index[idx[sel[0]]]), int(self.frame[idx[sel[0]]])
                boxes, _ = extract_boxes(self._tilt(fi, frame), self.centre_px[idx[sel]],
                                         self.box, fill=self.tilt_mean(fi, frame),
                                         scale=self.scale)
                if not torch.isfinite(boxes).all():
                    raise DataError(f"{self.files[fi]}: tilt image {frame + 1} has NaN/inf "
                                    "inside a particle box")
                out[torch.from_numpy(sel)] = boxes
        return out


class VolumeSource:
    """Lazy 3D volumes, one MRC file each (subtomograms or their CTF/weight volumes)."""

    def __init__(self, files: Sequence[str], shape: tuple[int, int, int] | None = None) -> None:
        self.files = [str(f) for f in files]
        self.shape = shape
        self._cache = _HandleCache(max_open=16)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        vols = []
        for i in np.asarray(indices, dtype=np.int64):
            data = self._cache.get(self.files[i])
            if data.ndim != 3:
                raise DataError(f"{self.files[i]}: expected a 3D volume, got shape {data.shape}")
            if self.shape is not None and tuple(data.shape) != tuple(self.shape):
                raise DataError(
                    f"{self.files[i]}: volume shape {data.shape} differs from {self.shape}"
                )
            arr = np.asarray(data, dtype=np.float32)
            if not np.isfinite(arr).all():
                raise DataError(f"{self.files[i]}: contains NaN/inf")
            vols.append(arr)
        return torch.from_numpy(np.stack(vols)) if vols else torch.zeros((0,))

    def close(self) -> None:
        self._cache.close()


class ArrayVolumeSource(VolumeSource):
    """Volumes held in an array or a memory-mapped ``.npy`` file (N, ...)."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__([f"<array:{i}>" for i in range(len(array))], tuple(array.shape[1:]))
        self._array = array

    def read(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self._array[idx], dtype=np.float32))

"""MRC reading and (atomic) writing with clear errors.

* :func:`write_mrc` writes float32 volumes, images or image stacks (``.mrcs``).
* :func:`read_mrc` returns ``(array, pixel_size_A)``; missing, non-MRC and truncated files
  raise :class:`~tomohet.data.sources.DataError` naming the file.
* :func:`mrc_info` reads only the header (shape, pixel size) and checks the file length.
* :func:`write_mrc_stack` streams a large stack to disk chunk by chunk.
* :func:`load_volume`: a volume given as an MRC path or an array (e.g. a method's
  reference or mask parameter) as a float32 tensor.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import torch

from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_path

__all__ = ["write_mrc", "read_mrc", "mrc_info", "MrcInfo", "write_mrc_stack", "load_volume"]

HEADER_BYTES = 1024
# MRC modes with real pixel values that mrcfile reads: int8, int16, float32, uint16, float16
REAL_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}


@dataclass(frozen=True)
class MrcInfo:
    """Header facts of an MRC file: ``shape`` in numpy order (z, y, x), voxel size in A."""

    shape: tuple[int, ...]
    pixel_size_A: float
    is_stack: bool


def _header(path: Path) -> mrcfile.mrcfile.MrcFile:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder (directory), not an MRC file")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataError(f"{path}: too small to be an MRC file ({size} bytes)")
    try:
        with warnings.catch_warnings():  # permissive mode warns; the checks below decide
            warnings.simplefilter("ignore")
            return mrcfile.open(path, mode="r", permissive=True, header_only=True)
    except Exception as exc:  # mrcfile raises ValueError and others
        raise DataError(f"{path}: not a readable MRC file ({exc})") from exc


def mrc_info(path: str | os.PathLike[str]) -> MrcInfo:
    """Shape (numpy order), voxel size (A) and stack flag from the header of ``path``.

    Raises DataError if the file is missing, not MRC, holds complex or unknown data
    (mode), or if its size differs from what the header says (truncated, or a header that
    lies about the mode or the shape).
    """
    p = Path(path)
    with _header(p) as m:
        h = m.header
        nx, ny, nz, mode = int(h.nx), int(h.ny), int(h.nz), int(h.mode)
        if mode in (3, 4):
            raise DataError(f"{p}: MRC mode {mode} holds complex values; tomohet needs real "
                            "images (the imaginary part would be dropped)")
        if mode not in REAL_MODES:
            raise DataError(f"{p}: unsupported MRC mode {mode} (supported: "
                            f"{', '.join(f'{k} {v}' for k, v in REAL_MODES.items())})")
        dtype = mrcfile.utils.data_dtype_from_header(h)
        if min(nx, ny, nz) < 1:
            raise DataError(f"{p}: MRC header has an empty shape ({nz}, {ny}, {nx})")
        expected = HEADER_BYTES + int(h.nsymbt) + nx * ny * nz * np.dtype(dtype).itemsize
        actual = p.stat().st_size
        if actual < expected:
            raise DataError(f"{p}: truncated MRC file ({actual} bytes, header says {expected}: "
                            f"{nx}x{ny}x{nz} values of mode {mode})")
        if actual > expected:
            raise DataError(f"{p}: file size {actual} bytes does not match the MRC header "
                            f"({expected} bytes for {nx}x{ny}x{nz} values of mode {mode} "
                            f"{REAL_MODES[mode]}): wrong mode or shape in the header?")
        pixel = float(m.voxel_size.x)
        is_stack = (int(h.ispg) == 0 and nz > 1) or p.suffix.lower() == ".mrcs"
    shape = (nz, ny, nx) if nz > 1 or is_stack else (ny, nx)
    return MrcInfo(shape=shape, pixel_size_A=pixel, is_stack=is_stack)


def read_mrc(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an MRC file -> ``(float32 array, pixel_size_A)``.

    Shapes: (y, x) images, (z, y, x) volumes or (n, y, x) stacks. ``pixel_size_A`` is the
    header voxel size along x (0.0 if unset).
    """
    p = Path(path)
    info = mrc_info(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mrcfile.open(p, mode="r", permissive=True)
        with m:
            if m.data is None:
                raise DataError(f"{p}: MRC file has no data block")
            data = np.array(m.data, dtype=np.float32)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{p}: not a readable MRC file ({exc})") from exc
    if not np.isfinite(data).all():
        raise DataError(f"{p}: contains NaN or inf values")
    return data, info.pixel_size_A


def write_mrc(
    path: str | os.PathLike[str],
    array: np.ndarray,
    pixel_size_A: float,
    *,
    stack: bool | None = None,
) -> Path:
    """Write ``array`` (2D image, 3D volume or (n, y, x) stack) as float32 MRC, atomically.

    ``stack`` marks a 3D array as an image stack; default: when the suffix is ``.mrcs``.
    Returns the path.
    """
    p = Path(path)
    arr = np.ascontiguousarray(np.asarray(array), dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise DataError(f"{p}: cannot write an array of shape {arr.shape} as MRC")
    if not np.isfinite(arr).all():
        raise DataError(f"{p}: refusing to write NaN or inf values")
    as_stack = p.suffix.lower() == ".mrcs" if stack is None else stack
    with atomic_path(p) as tmp, mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(arr)
        if as_stack and arr.ndim == 3:
            m.set_image_stack()
        m.voxel_size = float(pixel_size_A)
    return p


def write_mrc_stack(
    path: str | os.PathLike[str],
    n_images: int,
    box: int,
    pixel_size_A: float,
    chunks: Iterable[tuple[int, np.ndarray]],
) -> Path:
    """Stream an (n_images, box, box) float32 stack to ``path`` atomically.

    ``chunks`` yields ``(start, images)`` with images of shape (k, box, box); every
    image must be written exactly once. Memory use is one chunk.
    """
    p = Path(path)
    written = np.zeros(n_images, dtype=bool)
    with atomic_path(p) as tmp:
        with mrcfile.new_mmap(tmp, shape=(n_images, box, box), mrc_mode=2,
                              overwrite=True) as m:
            for start, images in chunks:
                arr = np.asarray(images, dtype=np.float32)
                if not np.isfinite(arr).all():
                    raise DataError(f"{p}: refusing to write NaN or inf values")
                m.data[start : start + len(arr)] = arr
                written[start : start + len(arr)] = True
            m.set_image_stack()
            m.voxel_size = float(pixel_size_A)
            m.update_header_stats()
        if not written.all():
            raise DataError(f"{p}: {int((~written).sum())} stack images were never written")
    return p


def load_volume(v: str | os.PathLike[str] | np.ndarray | torch.Tensor | None
                ) -> torch.Tensor | None:
    """A volume (or stack of volumes) given as an MRC path or an array -> float32 tensor.

    ``None`` stays ``None``; a path is read with :func:`read_mrc` (its errors name the file).
    """
    if v is None:
        return None
    if isinstance(v, str | os.PathLike):
        arr, _ = read_mrc(v)
        return torch.as_tensor(np.asarray(arr, dtype=np.float32))
    return torch.as_tensor(np.asarray(v, dtype=np.float32))

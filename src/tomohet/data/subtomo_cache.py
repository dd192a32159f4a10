"""Subtomograms reconstructed on the fly from 2D tilt stacks, cached on disk.

Each particle's tilt images are back-projected in the tomogram frame with their CTF and
exposure filter (:func:`tomohet.data.prepare.backproject_subtomograms`). The
result is stored RELION-4 style: CTF-premultiplied real-space volumes and ``sum CTF^2``
weights in the rfft layout, in memory-mapped ``.npy`` files so large sets stream.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tomohet import parallel
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import backproject_subtomograms
from tomohet.data.sources import ArrayVolumeSource
from tomohet.physics.fourier import ft_to_volume

__all__ = ["subtomograms_from_tilts"]


def subtomograms_from_tilts(
    particles: TiltSeriesParticles,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> SubtomogramParticles:
    """Reconstruct every particle's subtomogram and 3D weight; returns a subtomogram set."""
    n, d = particles.n_particles, particles.optics.box
    folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="tomohet_subtomo_"))
    folder.mkdir(parents=True, exist_ok=True)
    vol_path, w_path = folder / "subtomograms.npy", folder / "subtomo_weights.npy"
    # several ranks (tomohet.parallel) share a given cache folder: rank 0 creates the
    # files, each rank fills its own row blocks; without a folder each rank fills its own
    shared = cache_dir is not None and parallel.world() > 1
    mode = "r+" if shared and not parallel.is_main() else "w+"
    if shared and mode == "r+":
        parallel.barrier()  # rank 0 has created the files
    vols = np.lib.format.open_memmap(vol_path, mode=mode, dtype=np.float32, shape=(n, d, d, d))
    wts = np.lib.format.open_memmap(w_path, mode=mode, dtype=np.float32,
                                    shape=(n, d, d, d // 2 + 1))
    if shared and mode == "w+":
        parallel.barrier()
    rows = parallel.owned_rows(n) if shared else None
    bar = tqdm(total=n, desc="subtomograms", unit="ptcl", disable=not progress, leave=False)
    for batch in particles.batches(batch_size, device, index=rows):
        data, weight = backproject_subtomograms(batch, particles.optics)
        vols[batch.index] = ft_to_volume(data, d).cpu().numpy()
        wts[batch.index] = weight.cpu().numpy()
        bar.update(len(batch.index))
    bar.close()
    vols.flush()
    wts.flush()
    if shared:
        parallel.barrier()  # every rank's rows are on disk
    optics = replace(particles.optics, ctf_premultiplied=True)
    return SubtomogramParticles(
        names=list(particles.names), tomo_names=list(particles.tomo_names),
        position_A=particles.position_A.copy(), rotation=particles.rotation.copy(),
        volumes=ArrayVolumeSource(np.load(vol_path, mmap_mode="r")),
        weights=ArrayVolumeSource(np.load(w_path, mmap_mode="r")),
        optics=optics, weight_layout="rfft", table=particles.table,
        meta=dict(particles.meta, derived="subtomograms reconstructed from tilt stacks"),
    )

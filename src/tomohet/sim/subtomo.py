"""Subtomograms and 3D CTF volumes from simulated tilt images (optional output).

Each particle's tilt images are back-projected in the tomogram frame by
``tomohet.data.prepare.backproject_subtomograms``: the subtomogram is the
CTF-premultiplied sum ``sum_t CTF_t X_t`` (real space, ``subtomo_NNNNNN.mrc``) and its
weight volume ``sum_t CTF_t^2`` in the rfft layout (D, D, D//2+1) (``ctf_NNNNNN.mrc``),
i.e. RELION 4 pseudo-subtomograms (``ctf_premultiplied=True``). The particle star file
goes through ``tomohet.io.write_particles``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import backproject_subtomograms
from tomohet.data.sources import VolumeSource
from tomohet.io.mrc import write_mrc
from tomohet.io.writers import write_particles
from tomohet.physics.fourier import ft_to_volume

__all__ = ["write_subtomograms"]


def write_subtomograms(particles: TiltSeriesParticles, folder: str | Path,
                       batch_size: int = 16, progress: bool = False,
                       fmt: str = "relion4") -> list[Path]:
    """Write one subtomogram and weight volume per particle plus a star file -> paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    px, d = particles.optics.pixel_size_A, particles.optics.box
    vol_files, ctf_files = [], []
    n = particles.n_particles
    bar = tqdm(total=n, desc="subtomograms", unit="ptcl", disable=not progress)
    for batch in particles.batches(batch_size):
        data, weight = backproject_subtomograms(batch, particles.optics)
        vols = ft_to_volume(data, box=d).numpy()
        for b, i in enumerate(batch.index):
            v, c = out / f"subtomo_{i:06d}.mrc", out / f"ctf_{i:06d}.mrc"
            write_mrc(v, vols[b], px)
            write_mrc(c, weight[b].numpy(), px)
            vol_files.append(v)
            ctf_files.append(c)
        bar.update(len(batch.index))
    bar.close()
    written = vol_files + ctf_files
    sub = SubtomogramParticles(
        names=list(particles.names), tomo_names=list(particles.tomo_names),
        position_A=particles.position_A, rotation=particles.rotation,
        volumes=VolumeSource([str(p) for p in vol_files], (d, d, d)),
        weights=VolumeSource([str(p) for p in ctf_files], (d, d, d // 2 + 1)),
        optics=replace(particles.optics, ctf_premultiplied=True), weight_layout="rfft",
        table=particles.table, meta=dict(particles.meta, format=fmt),
    )
    paths = write_particles(sub, out / "particles.star", fmt=fmt)
    return written + [Path(p) for p in paths]

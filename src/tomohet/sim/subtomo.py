"""Subtomograms and 3D CTF volumes from simulated tilt images (optional output).

Each particle's tilt images are back-projected in the tomogram frame, in one of two
styles (``style``):

* ``"pseudo"`` (``tomohet.data.prepare.backproject_subtomograms``): the
  CTF-premultiplied sum ``sum_t CTF_t X_t`` (real space, ``subtomo_NNNNNN.mrc``) and its
  weight volume ``sum_t CTF_t^2`` in the rfft layout (D, D, D//2+1) (``ctf_NNNNNN.mrc``),
  i.e. RELION 4 pseudo-subtomograms (``ctf_premultiplied=True``);
* ``"reconstructed"`` (``tomohet.data.prepare.reconstruct_subtomograms``): RELION
  3.0/3.1-style subtomograms, the images gridded and divided by their sampling density
  (as a weighted back-projection), with a 3D CTF volume in the centred (D, D, D) layout
  (``ctf_premultiplied=False``). Their noise is far from white within a shell (how many
  tilts reach a voxel depends on its direction; ``tomohet.methods.noise_profile``).

The particle star file goes through ``tomohet.io.write_particles``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import backproject_subtomograms, reconstruct_subtomograms
from tomohet.data.sources import VolumeSource
from tomohet.data.weights import rfft_to_centered_full
from tomohet.io.mrc import write_mrc
from tomohet.io.writers import write_particles
from tomohet.physics.fourier import ft_to_volume

__all__ = ["write_subtomograms"]


def write_subtomograms(particles: TiltSeriesParticles, folder: str | Path,
                       batch_size: int = 16, progress: bool = False,
                       fmt: str = "relion4", style: str = "pseudo") -> list[Path]:
    """Write one subtomogram and weight volume per particle plus a star file -> paths."""
    if style not in ("pseudo", "reconstructed"):
        raise ValueError(f"subtomogram style must be 'pseudo' or 'reconstructed', got {style!r}")
    pseudo = style == "pseudo"
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    px, d = particles.optics.pixel_size_A, particles.optics.box
    vol_files, ctf_files = [], []
    n = particles.n_particles
    bar = tqdm(total=n, desc="subtomograms", unit="ptcl", disable=not progress)
    for batch in particles.batches(batch_size):
        if pseudo:
            data, weight = backproject_subtomograms(batch, particles.optics)
        else:
            data, ctf = reconstruct_subtomograms(batch, particles.optics)
            weight = rfft_to_centered_full(ctf, d)
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
        weights=VolumeSource([str(p) for p in ctf_files],
                             (d, d, d // 2 + 1) if pseudo else (d, d, d)),
        optics=replace(particles.optics, ctf_premultiplied=pseudo),
        weight_layout="rfft" if pseudo else "centered_full",
        table=particles.table, meta=dict(particles.meta, format=fmt),
    )
    paths = write_particles(sub, out / "particles.star", fmt=fmt)
    return written + [Path(p) for p in paths]

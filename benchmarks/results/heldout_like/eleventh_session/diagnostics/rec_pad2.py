"""Reconstructed (RELION 3.0-style) subtomograms made as a crop of a larger reconstruction
(as a weighted back-projection of a tomogram is): the images gridded on a 2x oversampled
grid and divided by their sampling density there, back to real space, the central box
cut out and gridding-corrected. The 3D CTF as in tomohet.data.prepare.reconstruct_subtomograms.
usage: rec_pad2.py SIMDIR OUT   (or imported: reconstruct_pad2(batch, optics))"""
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tomohet.data.particles import SubtomogramParticles
from tomohet.data.prepare import prepare_batch, reconstruct_subtomograms
from tomohet.data.sources import VolumeSource
from tomohet.data.weights import rfft_to_centered_full
from tomohet.physics.fourier import shift_phase_2d, volume_to_ft
from tomohet.physics.projection import Backprojector, volumes_from_sums
from tomohet.physics.reconstruction import backproject


def reconstruct_pad2(batch, optics, min_weight=0.05):
    _, ctf3 = reconstruct_subtomograms(batch, optics)
    prep = prepare_batch(batch, optics)
    b, d = prep.mask.shape[0], optics.box
    prep.rotation = prep.rotation @ batch.particle_rotation[:, None].transpose(-1, -2)
    phase = shift_phase_2d(batch.shift_A / optics.pixel_size_A, d).expand(
        prep.transfer.shape).to(torch.complex64)
    bp = Backprojector(d, n_volumes=b, pad=2)
    prep.transfer = phase
    backproject(bp, prep, volume_index=torch.arange(b))
    data, weight = bp.grids()
    reg = torch.where(weight > min_weight, torch.zeros_like(weight), torch.full_like(weight, 1e30))
    vol = volumes_from_sums(data, weight, d, wiener_constant=reg)
    return volume_to_ft(vol), ctf3


if __name__ == "__main__":
    from tomohet.io import read_particles
    from tomohet.io.mrc import write_mrc
    from tomohet.io.writers import write_particles
    from tomohet.physics.fourier import ft_to_volume

    torch.set_num_threads(1)
    sim, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    parts = read_particles(str(sim / "particles.star"))
    opt = parts.optics
    d, px = opt.box, opt.pixel_size_A
    vf, cf = [], []
    for batch in parts.batches(16):
        x, c = reconstruct_pad2(batch, opt)
        vols = ft_to_volume(x, box=d).numpy()
        full = rfft_to_centered_full(c, d).numpy()
        for j, i in enumerate(batch.index):
            a, b_ = out / f"subtomo_{i:06d}.mrc", out / f"ctf_{i:06d}.mrc"
            write_mrc(a, vols[j], px)
            write_mrc(b_, full[j], px)
            vf.append(a)
            cf.append(b_)
    sub = SubtomogramParticles(
        names=list(parts.names), tomo_names=list(parts.tomo_names),
        position_A=parts.position_A, rotation=parts.rotation,
        volumes=VolumeSource([str(p) for p in vf], (d, d, d)),
        weights=VolumeSource([str(p) for p in cf], (d, d, d)),
        optics=replace(opt, ctf_premultiplied=False), weight_layout="centered_full",
        table=parts.table, meta=dict(parts.meta, format="relion4"))
    print(write_particles(sub, out / "particles.star", fmt="relion4"))

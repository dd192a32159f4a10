"""Reconstructed (RELION 3.0-style) subtomograms whose SIGNAL is exactly tomohet's model
(3D CTF x the map rotated, sampled as ml3d samples it) and whose NOISE is the
reconstruction of the images' noise: rec(noisy) - rec(clean) + CTF3D * V(A^T k).
No gridding error in the signal, everything else as before. With WHITE=1 in the
environment the noise is instead white Gaussian noise in real space (independent voxels,
the same variance as the reconstructed noise), masked to the voxels with a CTF: the
model's own assumption.
usage: write_modelled.py NOISY_SIM CLEAN_SIM OUT"""
import os
import sys
from dataclasses import replace
from pathlib import Path

import mrcfile
import numpy as np
import torch
from tomohet.data.particles import SubtomogramParticles
from tomohet.data.prepare import reconstruct_subtomograms
from tomohet.data.sources import VolumeSource
from tomohet.data.weights import rfft_to_centered_full
from tomohet.io import read_particles
from tomohet.io.mrc import write_mrc
from tomohet.io.writers import write_particles
from tomohet.physics.forward import model_transforms, PreparedBatch
from tomohet.physics.fourier import freq_grid_3d, ft_to_volume, volume_to_ft
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)
noisy_dir, clean_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
noisy = read_particles(str(noisy_dir / "particles.star"))
clean = read_particles(str(clean_dir / "particles.star"))
assert list(noisy.names) == list(clean.names)
v = torch.as_tensor(mrcfile.read(noisy_dir / "state_00.mrc").copy())
proj = VolumeProjector(v)
opt = noisy.optics
d, px = opt.box, opt.pixel_size_A
k3 = freq_grid_3d(d)
vol_files, ctf_files = [], []
for bn, bc in zip(noisy.batches(16), clean.batches(16)):
    xn, ctf = reconstruct_subtomograms(bn, opt)
    xc, _ = reconstruct_subtomograms(bc, opt)
    freqs = torch.einsum("bji,zyxj->bzyxi", bn.particle_rotation, k3)
    model = proj.sample(freqs)[0] * ctf
    noise = xn - xc
    if os.environ.get("WHITE") == "1":
        sd = ft_to_volume(noise, box=d).std(dim=(1, 2, 3), keepdim=True)
        gen = torch.Generator().manual_seed(int(bn.index[0]))
        white = volume_to_ft(torch.randn((len(bn.index), d, d, d), generator=gen) * sd)
        noise = torch.where(ctf != 0, white, 0)
    x = noise + model
    vols = ft_to_volume(x, box=d).numpy()
    full = rfft_to_centered_full(ctf, d).numpy()
    for j, i in enumerate(bn.index):
        vf, cf = out / f"subtomo_{i:06d}.mrc", out / f"ctf_{i:06d}.mrc"
        write_mrc(vf, vols[j], px)
        write_mrc(cf, full[j], px)
        vol_files.append(vf)
        ctf_files.append(cf)
sub = SubtomogramParticles(
    names=list(noisy.names), tomo_names=list(noisy.tomo_names),
    position_A=noisy.position_A, rotation=noisy.rotation,
    volumes=VolumeSource([str(p) for p in vol_files], (d, d, d)),
    weights=VolumeSource([str(p) for p in ctf_files], (d, d, d)),
    optics=replace(opt, ctf_premultiplied=False), weight_layout="centered_full",
    table=noisy.table, meta=dict(noisy.meta, format="relion4"))
print(write_particles(sub, out / "particles.star", fmt="relion4"))

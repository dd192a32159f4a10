"""RELION 3.0/3.1-style subtomograms from simulated tilt images: a gridded reconstruction
normalised by its sampling density (as a weighted back-projection is), NOT CTF-premultiplied,
with a 3D CTF volume = the density-weighted mean CTF of the tilts at each voxel.
usage: write_r30.py SIMDIR OUT
Superseded by tomohet.data.prepare.reconstruct_subtomograms (`tomohet simulate
--subtomograms reconstructed`: the same algorithm, the CTF in the centred layout); kept as
the script the first measurements ran."""
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tomohet.data.particles import SubtomogramParticles
from tomohet.data.prepare import prepare_batch
from tomohet.data.sources import VolumeSource
from tomohet.io import read_particles
from tomohet.io.mrc import write_mrc
from tomohet.io.writers import write_particles
from tomohet.physics.fourier import ft_to_volume, shift_phase_2d
from tomohet.physics.projection import Backprojector
from tomohet.physics.reconstruction import backproject

torch.set_num_threads(1)
sim, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
parts = read_particles(str(sim / "particles.star"))
opt = parts.optics
d, px = opt.box, opt.pixel_size_A
vol_files, ctf_files = [], []
for batch in parts.batches(16):
    prep = prepare_batch(batch, opt)
    b = prep.mask.shape[0]
    prep.rotation = prep.rotation @ batch.particle_rotation[:, None].transpose(-1, -2)
    phase = shift_phase_2d(batch.shift_A / px, d).expand(prep.transfer.shape)
    h = (prep.transfer * phase.conj()).real.to(torch.complex64)
    idx = torch.arange(b)
    bx = Backprojector(d, n_volumes=b, pad=1)
    prep.transfer = phase.to(torch.complex64)
    backproject(bx, prep, volume_index=idx)          # sum conj(S) X w, sum w
    sx, sw = bx.rfft_grids()
    bh = Backprojector(d, n_volumes=b, pad=1)
    prep.data, prep.transfer = h, torch.ones_like(h)
    backproject(bh, prep, volume_index=idx)          # sum H w, sum w
    sh, _ = bh.rfft_grids()
    ok = sw > 0.2
    x3 = torch.where(ok, sx / sw.clamp_min(1e-6), 0)
    c3 = torch.where(ok, sh.real / sw.clamp_min(1e-6), 0)
    vols = ft_to_volume(x3, box=d).numpy()
    for j, i in enumerate(batch.index):
        v, c = out / f"subtomo_{i:06d}.mrc", out / f"ctf_{i:06d}.mrc"
        write_mrc(v, vols[j], px)
        write_mrc(c, c3[j].numpy(), px)
        vol_files.append(v)
        ctf_files.append(c)
sub = SubtomogramParticles(
    names=list(parts.names), tomo_names=list(parts.tomo_names),
    position_A=parts.position_A, rotation=parts.rotation,
    volumes=VolumeSource([str(p) for p in vol_files], (d, d, d)),
    weights=VolumeSource([str(p) for p in ctf_files], (d, d, d // 2 + 1)),
    optics=replace(opt, ctf_premultiplied=False), weight_layout="rfft",
    table=parts.table, meta=dict(parts.meta, format="relion4"))
print(write_particles(sub, out / "particles.star", fmt="relion4"))

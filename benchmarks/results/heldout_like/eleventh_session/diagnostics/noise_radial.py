"""Real-space noise variance of simulated subtomograms by radius (reconstructed and pseudo):
rec/backproject of noisy minus clean images of the one-state null, 96 particles."""
import numpy as np, torch
from tomohet.io import read_particles
from tomohet.data.prepare import reconstruct_subtomograms, backproject_subtomograms
from tomohet.physics.fourier import ft_to_volume
torch.set_num_threads(1)
S = "/work/scratch/heldout_like"
noisy = read_particles(f"{S}/null-m05-snr0.3-n300-rec/particles.star")
clean = read_particles(f"{S}/null-clean/particles.star")
opt = noisy.optics; d = opt.box
acc = {"rec": 0, "pseudo": 0}
n = 0
for bn, bc in zip(noisy.batches(16), clean.batches(16)):
    xn, _ = reconstruct_subtomograms(bn, opt); xc, _ = reconstruct_subtomograms(bc, opt)
    acc["rec"] = acc["rec"] + (ft_to_volume(xn - xc, box=d) ** 2).sum(0)
    pn, _ = backproject_subtomograms(bn, opt); pc, _ = backproject_subtomograms(bc, opt)
    acc["pseudo"] = acc["pseudo"] + (ft_to_volume(pn - pc, box=d) ** 2).sum(0)
    n += len(bn.index)
    if n >= 96: break
c = torch.arange(d) - d // 2
zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
r = (zz**2 + yy**2 + xx**2).float().sqrt()
for k, v in acc.items():
    v = v / n
    prof = [float(v[(r >= a) & (r < a + 4)].mean()) for a in range(0, 24, 4)]
    print(k, "variance by radius (0-4, 4-8, ..., 20-24), relative to centre:", [round(p / prof[0], 3) for p in prof])
    # anisotropy: along z vs x at radius 8-12
    sh = (r >= 8) & (r < 12)
    zdir = sh & (zz.abs() > 0.8 * r); xdir = sh & (xx.abs() > 0.8 * r)
    print("   r 8-12: along z", round(float(v[zdir].mean() / prof[0]), 3), "along x", round(float(v[xdir].mean() / prof[0]), 3))

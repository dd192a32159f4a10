"""Where discovery's variance z-map peaks against the true components' sites.
usage: zsites.py SIM_DIR CLASSIFY_OUT"""
import sys

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F

sim, cls = sys.argv[1], sys.argv[2]
z = mrcfile.open(f"{cls}/variance_z.mrc").data.astype(np.float32)
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
# states A+B, A, B, core
A = vols[0] - vols[2]
B = vols[0] - vols[1]
n = z.shape[0]


def down(v):
    t = torch.from_numpy(v)[None, None]
    return F.interpolate(t, size=(n, n, n), mode="trilinear", align_corners=False)[0, 0].numpy()


for name, c in (("A", down(A)), ("B", down(B))):
    m = c > 0.3 * c.max()
    print(f"{name}: {m.sum()} voxels of {n**3}, mass {c[c>0].sum():.1f}, "
          f"z max inside {z[m].max():.2f} mean inside {z[m].mean():.2f}; "
          f"centre {np.argwhere(m).mean(0).round(1)}")
mA = down(A) > 0.3 * down(A).max()
mB = down(B) > 0.3 * down(B).max()
out = ~(mA | mB)
print(f"z max elsewhere {z[out].max():.2f} at {np.unravel_index(np.where(out, z, -9).argmax(), z.shape)}")
print(f"z overall max {z.max():.2f} at {np.unravel_index(z.argmax(), z.shape)}")

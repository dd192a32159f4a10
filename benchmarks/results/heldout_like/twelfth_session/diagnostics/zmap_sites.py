"""Peak of a run's variance_z.mrc inside each true component's region against elsewhere.
usage: zmap_sites.py SIM_DIR RUN_DIR [RUN_DIR ...]"""
import sys

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F

sim = sys.argv[1]
vols = [mrcfile.open(f"{sim}/state_{i:02d}.mrc").data.astype(np.float32) for i in range(4)]
comps = {"A": np.clip(vols[0] - vols[2], 0, None), "B": np.clip(vols[0] - vols[1], 0, None)}
for run in sys.argv[2:]:
    z = mrcfile.open(f"{run}/variance_z.mrc").data.astype(np.float32)
    small = z.shape[-1]
    line = [run.rstrip("/").split("/")[-1], f"grid {z.shape}", f"max {z.max():.2f}"]
    inside_any = np.zeros(z.shape[-3:], bool)
    for name, c in comps.items():
        ct = torch.from_numpy(c)[None, None]
        cs = F.adaptive_avg_pool3d(ct, small)[0, 0].numpy()
        region = cs > 0.2 * cs.max()
        inside_any |= region
        zz = z if z.ndim == 3 else z.max(0)
        line.append(f"{name}: max z {zz[region].max():.2f} ({region.sum()} vox)")
    zz = z if z.ndim == 3 else z.max(0)
    out = zz[~inside_any]
    line.append(f"elsewhere: top {np.sort(out)[-3:][::-1].round(2)}")
    print(" | ".join(line))

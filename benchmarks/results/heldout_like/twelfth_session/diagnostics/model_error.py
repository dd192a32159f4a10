"""Per shell: power of the residual against the true maps (each particle's own state) of
subtomogram sets, e.g. a noise-free one (model error) and a noisy one (noise + error).
usage: model_error.py SIM_DIR [SIM_DIR ...]"""
import sys

import mrcfile
import numpy as np
import pandas as pd
import torch

from tomohet.data.prepare import prepare_subtomo_batch
from tomohet.io import read_particles
from tomohet.physics.forward import model_transforms
from tomohet.physics.fourier import radial_shell_index
from tomohet.physics.projection import VolumeProjector

torch.set_num_threads(1)
for sim in sys.argv[1:]:
    parts = read_particles(f"{sim}/subtomograms/particles.star")
    truth = pd.read_csv(f"{sim}/truth.csv").set_index("name").loc[list(parts.names)]
    vols = torch.stack([torch.as_tensor(mrcfile.read(f"{sim}/state_{i:02d}.mrc").copy())
                        for i in range(4)])
    proj = VolumeProjector(vols)
    d = parts.optics.box
    shell = radial_shell_index(d, 3)
    n_sh = d // 2 + 1
    res = np.zeros(n_sh); sig = np.zeros(n_sh); wt = np.zeros(n_sh)
    for b in parts.batches(16):
        prep = prepare_subtomo_batch(b, parts.optics)
        st = torch.as_tensor(truth["state"].values[b.index])
        model = model_transforms(proj, prep)[st, torch.arange(len(st))] * prep.transfer
        r = (prep.data - model).abs() ** 2
        s = model.abs() ** 2
        for j in range(len(st)):
            m = prep.mask[j]
            sh = shell[m]
            res += np.bincount(sh.numpy(), r[j][m].double().numpy(), n_sh)
            sig += np.bincount(sh.numpy(), s[j][m].double().numpy(), n_sh)
            wt += np.bincount(sh.numpy(), prep.premult_power[j][m].double().numpy(), n_sh)
    print(sim.rstrip("/").split("/")[-1])
    for k in range(1, n_sh, 2):
        print(f"  shell {k:2d}: residual/signal {res[k] / max(sig[k], 1e-30):.4f} "
              f"residual/weight {res[k] / max(wt[k], 1e-30):.4g}")

"""Does a classify output's split follow the particles' orientations? Cross-validated
k-NN on the beam direction in the particle frame (and on the full rotation), against the
majority rate. usage: orient_dep.py CLSOUT SIMDIR"""
import sys

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

out, sim = sys.argv[1], sys.argv[2]
a = pd.read_csv(f"{out}/assignments.csv")
t = pd.read_csv(f"{sim}/truth.csv").set_index("name").loc[a.particle]
y = a["class"].values
# RELION ZYZ: rot, tilt, psi
r = Rotation.from_euler("ZYZ", t[["rot_deg", "tilt_deg", "psi_deg"]].values, degrees=True)
m = r.as_matrix()
beam = m[:, 2, :]  # one row / column: which does not matter for dependence
beam2 = m[:, :, 2]
feats = {"beam_row": np.c_[beam, -beam][:, :3] * np.sign(beam[:, 2:3] + 1e-9),
         "beam_col": beam2 * np.sign(beam2[:, 2:3] + 1e-9), "matrix": m.reshape(len(m), 9)}
base = np.bincount(y).max() / len(y)
print("classes", np.bincount(y)[1:].tolist(), "majority", round(base, 3))
for name, x in feats.items():
    for k in (5, 15):
        acc = cross_val_score(KNeighborsClassifier(k), x, y, cv=5).mean()
        print(f"{name:9s} k={k:2d} accuracy {acc:.3f}")

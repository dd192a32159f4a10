"""What does ml3d's false region (g2, SNR 0.3, subtomograms, peak cut off) split by?
usage: false_split.py CLSOUT SIMDIR"""
import sys
import mrcfile
import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

out, sim = sys.argv[1], sys.argv[2]
a = pd.read_csv(f"{out}/assignments.csv")
t = pd.read_csv(f"{sim}/truth.csv").set_index("name").loc[a.particle]
m2 = mrcfile.read(f"{out}/region_2_mask.mrc") > 0.5
m1 = mrcfile.read(f"{out}/region_1_mask.mrc") > 0.5
dens = {}
for k in sorted(a["class"].unique()):
    v = mrcfile.read(f"{out}/class_{k:03d}.mrc")
    dens[k] = (v[m1].mean(), v[m2].mean())
print("class: region1 density, region2 density", dens)
med2 = np.median([d[1] for d in dens.values()])
side = np.array([dens[k][1] > med2 for k in a["class"]])
print("false-split side sizes", side.sum(), (~side).sum())
print(pd.crosstab(t.state_name.values, side))
for col in ["defocus_um", "z_A", "x_A", "y_A", "rot_deg", "tilt_deg", "psi_deg", "n_visible_tilts", "tomogram_index"]:
    x = t[col].values.astype(float)
    p = mannwhitneyu(x[side], x[~side]).pvalue
    print(f"{col:16s} side1 {x[side].mean():9.3f}  side0 {x[~side].mean():9.3f}  p {p:.2e}")
# orientation: direction of the particle's z axis relative to the beam
tl = np.deg2rad(t.tilt_deg.values)
for name, x in [("|cos tilt|", np.abs(np.cos(tl))), ("sin^2 tilt", np.sin(tl) ** 2)]:
    p = mannwhitneyu(x[side], x[~side]).pvalue
    print(f"{name:16s} side1 {x[side].mean():9.3f}  side0 {x[~side].mean():9.3f}  p {p:.2e}")
print(pd.crosstab(t.tomogram.values, side))

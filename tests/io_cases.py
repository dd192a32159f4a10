"""Helpers of the IO tests: sample paths and comparisons of particle sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.data.particles import TiltSeriesParticles

REAL = Path(__file__).parent / "data" / "real"
STEM = "warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
OPT = REAL / f"{STEM}_optimisation_set.star"
PARTS = REAL / f"{STEM}.star"
TOMOS = REAL / f"{STEM}_tomograms.star"
EXTRA = ("rlnClassNumber", "rlnMaxValueProbDistribution", "tomohetLatent1", "tomohetLatent2")



# ---------------------------------------------------------------------------- helpers
def records(p: TiltSeriesParticles) -> dict[str, dict]:
    """Per particle name: every visible image's values, ordered by (dose, tilt)."""
    full = p.full_rotation()
    imgs = p.batch(np.arange(p.n_particles)).images.numpy()
    out = {}
    for n, name in enumerate(p.names):
        ts = np.nonzero(p.visible[n])[0]
        ts = ts[np.lexsort((p.tilt_deg[n, ts], p.dose_e_per_A2[n, ts]))]
        out[name] = {
            "tilt": p.tilt_deg[n, ts], "dose": p.dose_e_per_A2[n, ts],
            "du": p.defocus_u_A[n, ts], "dv": p.defocus_v_A[n, ts],
            "dang": p.defocus_angle_deg[n, ts], "scale": p.ctf_scale[n, ts],
            "shift": p.shift_A[n, ts], "rot": full[n, ts], "img": imgs[n, ts],
            "pos": p.position_A[n], "tomo": p.tomo_names[n],
        }
    return out


TOL = {"du": 1e-2, "dv": 1e-2, "dang": 1e-4, "shift": 1e-4, "rot": 1e-6, "img": 1e-6,
       "pos": 1e-3, "tilt": 1e-4, "dose": 1e-4, "scale": 1e-6}


def assert_same(a: TiltSeriesParticles, b: TiltSeriesParticles) -> None:
    ra, rb = records(a), records(b)
    assert sorted(ra) == sorted(rb)
    for name, rec in ra.items():
        assert rec["tomo"] == rb[name]["tomo"]
        for key, tol in TOL.items():
            np.testing.assert_allclose(rb[name][key], rec[key], atol=tol, rtol=0,
                                       err_msg=f"{name}: {key}")


def no_temp_files(folder: Path) -> None:
    left = [f for f in folder.rglob("*") if ".tmp" in f.name]
    assert not left, left


def extra_for(names: list[str]) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame({"rlnClassNumber": np.arange(n) % 3 + 1,
                         "rlnMaxValueProbDistribution": np.linspace(0.2, 0.9, n),
                         "tomohetLatent1": np.linspace(-1, 1, n),
                         "tomohetLatent2": np.arange(n) * 0.5})


def check_extra(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    for col in EXTRA:
        np.testing.assert_allclose(pd.to_numeric(table[col]).to_numpy(),
                                   expected[col].to_numpy(), atol=1e-6, err_msg=col)


"""Hand-written per-tilt-image stars for ``tests/test_io_warp_layouts.py``: a truth table
of tilt images with a constant image per row whose value codes the row, the star and
stacks written from it (no tomohet writer involved), and row-by-row checks of a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from tomohet.io.conventions import relion_to_matrix
from tomohet.io.mrc import write_mrc

BOX, PIXEL, N_TILTS = 8, 5.0, 39


def _scheme(tomo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dose-symmetric scheme: (angle, dose, 1-based index in angle order) per tilt."""
    angles = [0.0] + [s * 3.0 * i for i in range(1, 20) for s in (1, -1)]
    angle = np.array(angles[:N_TILTS]) + 0.5 * tomo  # schemes differ slightly per tomogram
    dose = 2.5 * np.arange(N_TILTS)
    index = np.argsort(np.argsort(angle)) + 1
    return angle, dose, index


@dataclass
class Case:
    star: Path
    truth: pd.DataFrame  # one row per written row: tomo, group, tilt index, dose, code ...


def make_truth(particles: list[tuple[str, str, int]], rng: np.random.Generator) -> pd.DataFrame:
    """One row per tilt image of ``particles`` = [(tomogram, group, n_tilts)]."""
    rows = []
    tomos = list(dict.fromkeys(t for t, _, _ in particles))
    for tomo, group, n in particles:
        angle, dose, index = _scheme(tomos.index(tomo))
        keep = np.sort(rng.choice(N_TILTS, size=n, replace=False))
        for k in keep:
            rows.append({"tomo": tomo, "group": group, "k": int(index[k]),
                         "angle": float(angle[k]), "dose": float(dose[k])})
    df = pd.DataFrame(rows)
    df["code"] = np.arange(1, len(df) + 1, dtype=np.float64)
    df["du"] = rng.uniform(15000, 25000, len(df)).round(1)
    for c, (lo, hi) in {"rot": (-180, 180), "tilt": (5, 175), "psi": (-180, 180)}.items():
        df[c] = rng.uniform(lo, hi, len(df)).round(3)
    return df


def write_case(folder: Path, truth: pd.DataFrame, micrograph: str | None = "per_tilt",
               tomo_column: bool = False, stack_folder: Path | None = None,
               image_prefix: str = "stacks/", rng: np.random.Generator | None = None,
               block: str = "") -> Case:
    """Write stacks (one per particle, frames shuffled) and the per-tilt star."""
    rng = rng or np.random.default_rng(0)
    stacks = stack_folder or folder / "stacks"
    names = []
    for (tomo, group), rows in truth.groupby(["tomo", "group"], sort=False):
        order = rng.permutation(len(rows))  # frame j holds row order[j]
        images = np.ones((len(rows), BOX, BOX), np.float32) * \
            rows["code"].to_numpy()[order][:, None, None]
        stem = f"{tomo}_p{group}.mrcs"
        write_mrc(stacks / stem, images, PIXEL)
        frame = np.empty(len(rows), dtype=np.int64)
        frame[order] = np.arange(len(rows))
        names += list(zip(rows.index, [f"{f + 1}@{image_prefix}{stem}" for f in frame],
                          strict=True))
    image = pd.Series(dict(names)).loc[truth.index]
    star = pd.DataFrame({
        "rlnImageName": image.to_numpy(),
        "rlnGroupName": truth["group"].to_numpy(),
        "rlnAngleRot": truth["rot"], "rlnAngleTilt": truth["tilt"],
        "rlnAnglePsi": truth["psi"],
        "rlnDefocusU": truth["du"], "rlnDefocusV": truth["du"] - 100.0,
        "rlnDefocusAngle": 30.0,
        "rlnCtfBfactor": -4.0 * truth["dose"],
        "rlnCtfScalefactor": np.cos(np.deg2rad(truth["angle"])),
        "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
        "rlnDetectorPixelSize": PIXEL, "rlnMagnification": 10000.0,
        "rlnOriginX": 0.0, "rlnOriginY": 0.0,
    })
    if micrograph == "per_tilt":
        star["rlnMicrographName"] = [f"{t}_{k:02d}.mrc" for t, k in
                                     zip(truth["tomo"], truth["k"], strict=True)]
    elif micrograph == "per_tilt_no_index":
        star["rlnMicrographName"] = [f"{t}_{a:+.1f}deg.tif" for t, a in
                                     zip(truth["tomo"], truth["angle"], strict=True)]
    elif micrograph == "per_series":
        star["rlnMicrographName"] = [f"{t}.mrc" for t in truth["tomo"]]
    if tomo_column:
        star["rlnTomoName"] = truth["tomo"].to_numpy()
    path = folder / "particles.star"
    starfile.write({block: star.reset_index(drop=True)}, path, float_format="%.10g", sep="\t")
    return Case(path, truth)


def check_every_row(case: Case, p, tomo_of: dict[str, str] | None = None) -> None:
    """Each written row is one visible image of the right particle, with its own values."""
    assert p.meta["rows_in_file"] == len(case.truth)
    assert p.meta["images_read"] == len(case.truth) == int(p.visible.sum())
    assert p.meta["dropped"] == {}
    seen = np.zeros_like(p.visible)
    full = p.full_rotation()
    imgs = p.batch(np.arange(p.n_particles)).images.numpy()
    by_particle = {}
    for (tomo, group), rows in case.truth.groupby(["tomo", "group"], sort=False):
        name = group if tomo_of is None else tomo_of[(tomo, group)]
        n = p.names.index(name)
        by_particle[name] = n
        assert int(p.visible[n].sum()) == len(rows), name
        for _, r in rows.iterrows():
            t = np.nonzero(p.visible[n] & np.isclose(p.dose_e_per_A2[n], r["dose"]))[0]
            assert len(t) == 1, (name, r["k"])
            t = int(t[0])
            seen[n, t] = True
            assert imgs[n, t].mean() == pytest.approx(r["code"])
            assert p.defocus_u_A[n, t] == pytest.approx(r["du"])
            assert p.tilt_deg[n, t] == pytest.approx(abs(r["angle"]), abs=1e-3)
            want = relion_to_matrix(np.array([r["rot"]]), np.array([r["tilt"]]),
                                    np.array([r["psi"]]))[0]
            np.testing.assert_allclose(full[n, t], want, atol=1e-6)
    assert (seen == p.visible).all()
    assert len(by_particle) == p.n_particles


def slot_is_tilt(case: Case, p, tomo_of: dict[str, str] | None = None) -> None:
    """Within a tilt series a slot is one tilt for every particle, ordered by dose."""
    for tomo, rows in case.truth.groupby("tomo"):
        slot_of_k: dict[int, int] = {}
        for _, r in rows.iterrows():
            name = r["group"] if tomo_of is None else tomo_of[(tomo, r["group"])]
            n = p.names.index(name)
            t = int(np.nonzero(p.visible[n] & np.isclose(p.dose_e_per_A2[n], r["dose"]))[0][0])
            assert slot_of_k.setdefault(int(r["k"]), t) == t
        doses = rows.groupby("k")["dose"].first()
        ks = sorted(slot_of_k, key=lambda k: slot_of_k[k])
        assert np.all(np.diff(doses.loc[ks].to_numpy()) > 0)

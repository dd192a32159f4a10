"""Readers: corrupted files name the file and field; formats detected by column meaning."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from io_cases import OPT, REAL, STEM, assert_same

from tomohet.data.sources import DataError
from tomohet.io import (
    detect_format,
    read_particles,
    write_particles,
)


# ---------------------------------------------------------------------------- errors
def _edit_star(path: Path, block: str, edit) -> None:
    blocks = starfile.read(path, always_dict=True)
    blocks[block] = edit(blocks[block].copy())
    starfile.write(blocks, path)


def _set_cell(col: str, row: int, value):
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df
    return edit


CORRUPTIONS = {
    "missing particle column": (f"{STEM}.star", "particles",
                                lambda df: df.drop(columns=["rlnImageName"]), "rlnImageName"),
    "missing tilt column": (f"{STEM}_tomograms.star", "Unt_050.tomostar",
                            lambda df: df.drop(columns=["rlnDefocusU"]), "rlnDefocusU"),
    "NaN angle": (f"{STEM}.star", "particles", _set_cell("rlnAngleRot", 3, "nan"),
                  "rlnAngleRot"),
    "text in a number column": (f"{STEM}.star", "particles",
                                _set_cell("rlnCoordinateX", 0, "abc"), "rlnCoordinateX"),
    "NaN dose": (f"{STEM}_tomograms.star", "Unt_083.tomostar",
                 _set_cell("rlnMicrographPreExposure", 2, "nan"), "rlnMicrographPreExposure"),
    "unknown tomogram": (f"{STEM}.star", "particles",
                         _set_cell("rlnTomoName", 4, "Unt_999.tomostar"), "Unt_999"),
    "box mismatch": (f"{STEM}.star", "optics", lambda df: df.assign(rlnImageSize=64),
                     "rlnImageSize"),
    "visible frames too short": (f"{STEM}.star", "particles",
                                 _set_cell("rlnTomoVisibleFrames", 0, "[1,1,1]"),
                                 "rlnTomoVisibleFrames"),
    "bad optics group": (f"{STEM}.star", "particles", _set_cell("rlnOpticsGroup", 0, 9),
                         "rlnOpticsGroup"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_relion5_names_file_and_field(real_copy, case):
    file, block, edit, field = CORRUPTIONS[case]
    _edit_star(real_copy / file, block, edit)
    with pytest.raises(DataError) as exc:
        read_particles(real_copy / OPT.name)
    msg = str(exc.value)
    assert file in msg and field in msg, msg


def test_missing_truncated_and_empty_files(real_copy):
    stack = real_copy / STEM / "Unt_076" / "Unt_076_12.00A_000004.mrcs"
    stack.unlink()
    with pytest.raises(DataError, match=r"Unt_076_12.00A_000004.mrcs.*not found") as exc:
        read_particles(real_copy / OPT.name)
    assert f"{STEM}.star" in str(exc.value) and "rlnImageName" in str(exc.value)
    other = real_copy / STEM / "Unt_076" / "Unt_076_12.00A_000005.mrcs"
    stack.write_bytes(other.read_bytes()[:5000])  # truncated copy
    with pytest.raises(DataError, match=r"000004.mrcs: truncated MRC"):
        read_particles(real_copy / OPT.name)
    parts = real_copy / f"{STEM}.star"
    text = parts.read_text()
    parts.write_text(text[: len(text) - 300])  # cut inside the last particle row
    with pytest.raises(DataError, match=re.escape(str(parts))):
        read_particles(real_copy / OPT.name)
    parts.write_text("")
    with pytest.raises(DataError, match=r"empty file"):
        read_particles(real_copy / OPT.name)
    with pytest.raises(DataError, match="nothing.star: file not found"):
        read_particles(real_copy / "nothing.star")


def test_warp_errors_name_file_and_column(real, tmp_path):
    warp = tmp_path / "w.star"
    write_particles(real, warp, fmt="warp")
    df = starfile.read(warp)
    for col in ("rlnDefocusU", "rlnAngleTilt"):
        starfile.write(df.drop(columns=[col]), warp)
        with pytest.raises(DataError, match=rf"w.star.*{col}"):
            read_particles(warp, fmt="warp")
    bad = df.copy()
    bad["rlnImageName"] = bad["rlnImageName"].astype(str).str.replace("1@", "0@", n=1)
    bad.loc[0, "rlnImageName"] = "stack_without_index.mrcs"
    starfile.write(bad, warp)
    with pytest.raises(DataError, match=r"w.star.*rlnImageName row 1"):
        read_particles(warp, fmt="warp")


def test_subtomogram_errors(subtomos, tmp_path):
    path = tmp_path / "p.star"
    write_particles(subtomos, path, fmt="relion4")
    vol = Path(starfile.read(path, always_dict=True)["particles"]["rlnImageName"][2])
    (path.parent / vol).unlink()
    with pytest.raises(DataError, match=r"p.star: subtomogram .*not found"):
        read_particles(path)
    tbl = tmp_path / "d" / "t.tbl"
    write_particles(subtomos, tbl, fmt="dynamo")
    lines = tbl.read_text().splitlines()
    tbl.write_text("\n".join(lines[:-1] + [" ".join(lines[-1].split()[:20])]) + "\n")
    with pytest.raises(DataError, match=r"t.tbl: line 5 has 20 values"):
        read_particles(tbl)
    motl = tmp_path / "s" / "m.star"
    write_particles(subtomos, motl, fmt="stopgap")
    _edit_star(motl, "stopgap_motivelist", lambda df: df.drop(columns=["phi"]))
    with pytest.raises(DataError, match=r"m.star: block data_stopgap_motivelist has no column phi"):
        read_particles(motl)


# ---------------------------------------------------------------------------- detection
def test_formats_detected_by_column_meaning(real, real_copy, tmp_path):
    parts = real_copy / f"{STEM}.star"
    blocks = starfile.read(parts, always_dict=True)
    df = blocks["particles"]
    df["myScore"] = np.arange(len(df))  # unknown columns are kept
    blocks["particles"] = df[list(reversed(df.columns))]
    starfile.write(blocks, parts)
    assert detect_format(parts) == "relion5"
    q = read_particles(parts)
    assert_same(real, q)
    assert q.table["myScore"].tolist() == list(range(40))
    warp = tmp_path / "w.star"
    write_particles(real, warp, fmt="warp")
    wdf = starfile.read(warp)
    wdf["anotherColumn"] = "x"
    starfile.write(wdf[list(reversed(wdf.columns))], warp)
    assert detect_format(warp) == "warp"
    assert_same(real, read_particles(warp))
    with pytest.raises(DataError, match="not a recognised tomography particle file"):
        detect_format(REAL / "relion5_particles_example.star")
    with pytest.raises(DataError, match="unknown format"):
        read_particles(parts, fmt="cryosparc")


def test_load_volume_reads_paths_and_arrays_alike(tmp_path):
    import mrcfile
    import torch

    from tomohet.io import load_volume

    vol = np.random.default_rng(0).normal(size=(6, 6, 6))  # float64 in, float32 out
    path = tmp_path / "ref.mrc"
    with mrcfile.new(path) as m:  # written without tomohet.io, read back through it
        m.set_data(vol.astype(np.float32))
    from_array = load_volume(vol)
    assert from_array is not None and from_array.dtype == torch.float32
    assert torch.equal(from_array, torch.from_numpy(vol.astype(np.float32)))
    assert torch.equal(load_volume(path), from_array)
    assert torch.equal(load_volume(str(path)), from_array)
    assert load_volume(None) is None
    with pytest.raises(DataError, match="missing.mrc"):
        load_volume(tmp_path / "missing.mrc")

"""``tomohet info``, ``convert`` and ``reconstruct`` on the real WarpTools sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomohet import __version__
from tomohet.cli.main import main
from tomohet.io import read_mrc, read_particles

REAL = Path(__file__).parent / "data" / "real"
STEM = "warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
OPT = REAL / f"{STEM}_optimisation_set.star"


def _config(folder: Path, command: str) -> dict:
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["command"] == command and cfg["tomohet_version"] == __version__
    return cfg


def test_info_prints_the_counts(capsys):
    assert main(["info", str(OPT)]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    for text in ("40 particles", "4 tomograms", "37 tilts", "box 32", "12 A/px"):
        assert text in head, head
    assert "missing tilts of Unt_083.tomostar (1-based): 1, 6, 36" in out
    assert main(["info", str(REAL / f"{STEM}.star"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["particles"], s["tomograms"], s["tilt_slots"], s["box"]) == (40, 4, 37, 32)
    assert s["pixel_size_A"] == 12.0 and s["dose_max_e_per_A2"] == pytest.approx(92.019)
    assert s["missing_tilts_per_tomogram"]["Unt_076.tomostar"] == [10, 24]


def test_info_reports_bad_input_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.star"
    bad.write_text("")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "tomohet info: error:" in err and "bad.star: empty file" in err
    assert main(["info", str(REAL / "relion5_particles_example.star")]) == 2
    assert "not a recognised tomography particle file" in capsys.readouterr().err


def test_convert_relion5_to_warp_and_back(tmp_path, capsys):
    warp = tmp_path / "warp" / "particles.star"
    assert main(["convert", str(OPT), "--to", "warp", "--out", str(warp)]) == 0
    assert warp.exists()
    cfg = _config(warp.parent, "convert")
    assert cfg["config"]["to"] == "warp"
    back = tmp_path / "back" / "particles.star"
    assert main(["convert", str(warp), "--to", "relion5", "--out", str(back)]) == 0
    _config(back.parent, "convert")
    out = capsys.readouterr().out
    assert "40 particles: warp -> relion5" in out
    opt = back.parent / "particles_optimisation_set.star"
    assert opt.exists() and (back.parent / "particles_tomograms.star").exists()
    orig, again = read_particles(OPT), read_particles(opt)
    assert again.n_particles == 40 and sorted(again.names) == sorted(orig.names)
    for name in ("Unt_083/3", "Unt_076/7"):
        i, j = orig.names.index(name), again.names.index(name)
        for arr in ("dose_e_per_A2", "defocus_u_A", "tilt_deg"):
            a = np.sort(getattr(orig, arr)[i][orig.visible[i]])
            b = np.sort(getattr(again, arr)[j][again.visible[j]])
            np.testing.assert_allclose(b, a, atol=1e-2, err_msg=f"{name} {arr}")
    assert not [f for f in tmp_path.rglob("*") if ".tmp" in f.name]


def test_reconstruct_real_sample(tmp_path, capsys):
    out = tmp_path / "recon"
    assert main(["--threads", "1", "reconstruct", str(OPT), "--out", str(out),
                 "--no-progress", "--batch-size", "20"]) == 0
    for name in ("half1.mrc", "half2.mrc", "average.mrc", "fsc.csv", "fsc.png"):
        assert (out / name).exists(), name
    avg, px = read_mrc(out / "average.mrc")
    assert avg.shape == (32, 32, 32) and px == pytest.approx(12.0) and avg.std() > 0
    fsc = pd.read_csv(out / "fsc.csv")
    assert {"frequency_per_A", "resolution_A", "fsc"} <= set(fsc.columns)
    assert fsc["fsc"].iloc[1] > 0.5  # the half maps agree at low resolution
    cfg = _config(out, "reconstruct")
    assert cfg["config"]["data"] == str(OPT)
    assert "resolution" in capsys.readouterr().out


def test_every_command_has_help_with_an_example(capsys):
    for cmd in ("info", "convert", "reconstruct"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert f"tomohet {cmd} " in capsys.readouterr().out


def test_half_sets_from_the_file():
    from tomohet.cli.reconstruct import file_half_sets

    assert file_half_sets(pd.DataFrame({"rlnRandomSubset": [1, 2, 2]})).tolist() == [0, 1, 1]
    assert file_half_sets(pd.DataFrame({"halfset": ["A", "b", "A"]})).tolist() == [0, 1, 0]
    assert file_half_sets(pd.DataFrame({"rlnRandomSubset": [1, 1]})) is None  # one set only
    assert file_half_sets(pd.DataFrame({"rlnRandomSubset": [1, 3]})) is None
    assert file_half_sets(pd.DataFrame({"x": [1]})) is None

"""Per-tilt-image stars as Warp/M, tomoDRGN and cryoDRGN-ET write them: every row read.

Each star is written by hand (no tomohet writer involved), with one row per tilt image and
a constant image whose value codes the row, so a read can be checked row by row against
what was written: every row must come back exactly once, as the right particle, with its
own image, dose, tilt, defocus and orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from warp_cases import (
    N_TILTS,
    Case,
    check_every_row,
    make_truth,
    slot_is_tilt,
    write_case,
)

from tomohet.cli.info import conservation
from tomohet.cli.main import main
from tomohet.data.sources import DataError
from tomohet.io import read_particles, write_particles
from tomohet.io.detect import detect_format
from tomohet.io.warp_layout import strip_tilt_index

PROBLEM = [("TS_01", str(g), N_TILTS) for g in range(1, 6)] + [("TS_01", "6", 24)]


# ---------------------------------------------------------------------------- layouts
def test_micrograph_per_tilt_image_problem_case(tmp_path):
    """The reported file: rlnMicrographName per tilt image, 6 particles, 39 tilts, one 24."""
    case = write_case(tmp_path, make_truth(PROBLEM, np.random.default_rng(0)))
    assert len(case.truth) == 219
    assert detect_format(case.star) == "warp"
    p = read_particles(case.star)
    assert p.n_particles == 6 and p.n_tilts == N_TILTS
    assert sorted(p.tilts_per_particle().tolist()) == [24] + [39] * 5
    assert set(p.tomo_names) == {"TS_01"}
    assert p.meta["warp_tilt_series_from"] == "rlnMicrographName without its per-tilt index"
    check_every_row(case, p)
    slot_is_tilt(case, p)


def test_info_reports_every_image_of_the_problem_case(tmp_path, capsys):
    case = write_case(tmp_path, make_truth(PROBLEM, np.random.default_rng(1)))
    assert main(["info", str(case.star)]) == 0
    captured = capsys.readouterr()
    assert "images read: 219 of 219 rows in the file" in captured.out
    assert "6 particles, 1 tomograms, 39 tilts per tilt series (24-39 visible" in captured.out
    assert "WARNING" not in captured.out + captured.err


MULTI = [("TS_01", "1", 39), ("TS_01", "2", 30), ("TS_02", "3", 39), ("TS_02", "4", 12),
         ("TS_03", "5", 39)]


@pytest.mark.parametrize("micrograph,tomo_column,source", [
    ("per_tilt", False, "rlnMicrographName without its per-tilt index"),
    ("per_series", False, "rlnMicrographName (one per tilt series)"),
    ("per_tilt", True, "rlnTomoName"),
    ("per_series", True, "rlnTomoName"),
    (None, True, "rlnTomoName"),
])
def test_layouts_read_every_row(tmp_path, micrograph, tomo_column, source):
    case = write_case(tmp_path, make_truth(MULTI, np.random.default_rng(2)), micrograph,
                      tomo_column, block="particles")
    p = read_particles(case.star)
    assert p.meta["warp_tilt_series_from"] == source
    assert len(set(p.tomo_names)) == 3 and p.n_tilts == N_TILTS
    want = {g: t.replace(".mrc", "") for t, g, _ in MULTI}
    assert {n: t.replace(".mrc", "") for n, t in zip(p.names, p.tomo_names, strict=True)} \
        == want
    check_every_row(case, p)
    slot_is_tilt(case, p)


def test_no_tomogram_column_is_one_tilt_series(tmp_path):
    one = [(t, g, n) for t, g, n in MULTI if t == "TS_01"]
    case = write_case(tmp_path, make_truth(one, np.random.default_rng(3)), micrograph=None)
    p = read_particles(case.star)
    assert p.meta["warp_tilt_series_from"].startswith("none")
    check_every_row(case, p)
    slot_is_tilt(case, p)


# ---------------------------------------------------------------------------- group names
RESTART = [("TS_01", "1", 39), ("TS_01", "2", 39), ("TS_02", "1", 39), ("TS_02", "2", 20),
           ("TS_02", "3", 39)]
QUALIFIED = {(t, g): f"{t}/{g}" for t, g, _ in RESTART}


@pytest.mark.parametrize("micrograph,tomo_column", [
    ("per_tilt", False), ("per_series", False), ("per_tilt", True), (None, True)])
def test_group_names_restarting_per_tomogram_stay_separate(tmp_path, micrograph,
                                                           tomo_column):
    case = write_case(tmp_path, make_truth(RESTART, np.random.default_rng(4)), micrograph,
                      tomo_column)
    p = read_particles(case.star)
    assert p.n_particles == 5
    # the tilt series keeps the name the file gives it (here the micrograph's)
    suffix = ".mrc" if micrograph == "per_series" and not tomo_column else ""
    names = {(t, g): f"{t}{suffix}/{g}" for t, g, _ in RESTART}
    assert sorted(p.names) == sorted(names.values())
    check_every_row(case, p, names)
    slot_is_tilt(case, p, names)


def test_restarting_groups_round_trip_keep_group_and_micrograph_names(tmp_path):
    case = write_case(tmp_path, make_truth(RESTART, np.random.default_rng(5)))
    p = read_particles(case.star)
    out = tmp_path / "out" / "particles.star"
    write_particles(p, out, fmt="warp")
    df = starfile.read(out)
    assert sorted(df["rlnGroupName"].astype(str).unique()) == ["1", "2", "3"]
    before = starfile.read(case.star)
    key = ["rlnImageName"]
    merged = before[key + ["rlnMicrographName"]].merge(
        df.assign(rlnImageName=df["rlnImageName"].str.replace("../", "", regex=False))[
            key + ["rlnMicrographName", "rlnTomoName"]], on=key, suffixes=("", "_out"))
    assert len(merged) == len(before)
    assert (merged["rlnMicrographName"] == merged["rlnMicrographName_out"]).all()
    assert (merged["rlnTomoName"] == merged["rlnMicrographName"].str[:5]).all()
    q = read_particles(out)
    assert q.meta["warp_tilt_series_from"] == "rlnTomoName"
    check_every_row(Case(out, case.truth), q, QUALIFIED)


def test_row_order_does_not_matter(tmp_path):
    case = write_case(tmp_path, make_truth(RESTART, np.random.default_rng(6)))
    df = starfile.read(case.star)
    shuffled = tmp_path / "shuffled.star"
    starfile.write(df.sample(frac=1.0, random_state=3).reset_index(drop=True), shuffled,
                   float_format="%.10g", sep="\t")
    a, b = read_particles(case.star), read_particles(shuffled)
    assert sorted(a.names) == sorted(b.names) and b.names != a.names  # rows really moved
    for name in a.names:
        i, j = a.names.index(name), b.names.index(name)
        assert a.tomo_names[i] == b.tomo_names[j]
        np.testing.assert_array_equal(a.visible[i], b.visible[j])
        np.testing.assert_array_equal(a.dose_e_per_A2[i], b.dose_e_per_A2[j])
    check_every_row(Case(shuffled, case.truth), b, QUALIFIED)


# ---------------------------------------------------------------------------- fallbacks
def test_micrographs_without_index_fall_back_to_one_series_per_group(tmp_path):
    case = write_case(tmp_path, make_truth(MULTI, np.random.default_rng(7)),
                      micrograph="per_tilt_no_index")
    p = read_particles(case.star)
    assert p.meta["warp_tilt_series_from"].startswith("particle group")
    check_every_row(case, p)


def test_restarting_groups_without_any_tilt_series_name_are_refused(tmp_path):
    same = [("TS_01", "1", 39), ("TS_02", "1", 39)]
    truth = make_truth(same, np.random.default_rng(8))
    truth["angle"] = truth["angle"] - 0.5 * (truth["tomo"] == "TS_02")  # same scheme
    case = write_case(tmp_path, truth, micrograph="per_tilt_no_index")
    with pytest.raises(DataError, match=r"particles\.star.*particle '1'.*rlnTomoName"):
        read_particles(case.star)


def test_strip_tilt_index():
    assert strip_tilt_index("TS_01_21.mrc") == ("TS_01", 21)
    assert strip_tilt_index("a/b/TS_01_021.tif") == ("a/b/TS_01", 21)
    assert strip_tilt_index("Position_3-7.mrc") == ("Position_3", 7)
    assert strip_tilt_index("TS_01_+3.0deg.tif") is None
    assert strip_tilt_index("tomo.mrc") is None


# ---------------------------------------------------------------------------- collisions
@pytest.mark.parametrize("seed,column,row,match", [
    # two rows naming one image
    (9, "rlnImageName", 5, r"star: rlnImageName: duplicate image .* rows 5, 6"),
    # two images of one particle in one tilt image
    (10, "rlnMicrographName", 3, r"rows 3, 4 .*particle '1'.*rlnMicrographName"),
])
def test_collisions_are_refused(tmp_path, seed, column, row, match):
    case = write_case(tmp_path, make_truth(MULTI, np.random.default_rng(seed)))
    df = starfile.read(case.star)
    df.loc[row, column] = df.loc[row - 1, column]
    starfile.write(df, case.star, float_format="%.10g", sep="\t")
    with pytest.raises(DataError, match=match):
        read_particles(case.star)


# ---------------------------------------------------------------------------- --datadir
def test_datadir_finds_stacks_relative_to_another_folder(tmp_path, capsys):
    data = tmp_path / "data"
    star_dir = tmp_path / "project"
    star_dir.mkdir()
    case = write_case(star_dir, make_truth(MULTI[:2], np.random.default_rng(11)),
                      stack_folder=data / "stacks")
    with pytest.raises(DataError) as err:
        read_particles(case.star)
    msg = str(err.value)
    assert str(case.star) in msg and "rlnImageName" in msg and "--datadir" in msg
    assert str(star_dir / "stacks") in msg and str(Path.cwd() / "stacks") in msg
    p = read_particles(case.star, datadir=data)
    check_every_row(case, p)
    assert main(["info", str(case.star), "--datadir", str(data)]) == 0
    assert "images read: 69 of 69 rows" in capsys.readouterr().out
    # a datadir without the files: the message names both places tried
    with pytest.raises(DataError) as err:
        read_particles(case.star, datadir=tmp_path)
    assert str(tmp_path / "stacks") in str(err.value)
    assert str(star_dir / "stacks") in str(err.value)


def test_datadir_takes_file_names_of_foreign_absolute_paths(tmp_path):
    stacks = tmp_path / "here"
    case = write_case(tmp_path, make_truth(MULTI[:1], np.random.default_rng(12)),
                      stack_folder=stacks, image_prefix="/cluster/gone/")
    with pytest.raises(DataError, match="/cluster/gone/"):
        read_particles(case.star)
    check_every_row(case, read_particles(case.star, datadir=stacks))


def test_datadir_reaches_subtomogram_readers(subtomos, tmp_path):
    star = tmp_path / "meta" / "sub.star"
    write_particles(subtomos, star, fmt="relion4")
    moved = tmp_path / "moved"
    (tmp_path / "meta" / "sub_subtomos").rename(moved)
    with pytest.raises(DataError, match="rlnImageName"):
        read_particles(star)
    q = read_particles(star, datadir=moved)
    assert q.n_particles == subtomos.n_particles and q.meta["images_read"] == 5


# ---------------------------------------------------------------------------- info
def test_info_warns_when_rows_are_unaccounted_for(tmp_path):
    case = write_case(tmp_path, make_truth(MULTI[:2], np.random.default_rng(13)))
    p = read_particles(case.star)
    assert conservation(p)["warning"] is None
    p.meta["rows_in_file"] = 80
    assert "11 rows unaccounted for" in conservation(p)["warning"]
    p.meta["dropped"] = {"max dose filter": 11}
    c = conservation(p)
    assert c["warning"] is None and "dropped: 11 rows (max dose filter)" in c["lines"]


def _leaf_parsers(parser, path=()):
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def test_every_command_reading_a_particle_set_takes_datadir():
    from tomohet.cli.main import build_parser

    readers = {p: sub for p, sub in _leaf_parsers(build_parser())
               if any(a.dest == "data" and not a.option_strings for a in sub._actions)}
    assert {p[0] for p in readers} >= {"info", "convert", "reconstruct", "classify", "embed",
                                       "train"}
    assert ("classify", "shc") in readers
    for path, sub in readers.items():
        assert "--datadir" in sub._option_string_actions, path


@pytest.mark.parametrize("col,value", [
    ("rlnMagnification", 0.0), ("rlnDetectorPixelSize", -5.0), ("rlnDetectorPixelSize", 1e30),
    ("rlnVoltage", 0.0), ("rlnCtfBfactor", 40.0), ("rlnCtfScalefactor", 0.0)])
def test_impossible_values_name_the_column(tmp_path, col, value):
    case = write_case(tmp_path, make_truth(MULTI[:1], np.random.default_rng(14)))
    df = starfile.read(case.star)
    df[col] = value
    starfile.write(df, case.star, float_format="%.10g", sep="\t")
    with pytest.raises(DataError, match=rf"particles\.star.*{col}.*impossible"):
        read_particles(case.star)

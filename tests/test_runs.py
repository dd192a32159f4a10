"""analysis.runs reads a run's tables back as written (particle names are strings)."""

from pathlib import Path

import pytest

from tomohet.analysis.runs import _read_csv
from tomohet.data.sources import DataError


def test_particle_names_keep_leading_zeros(tmp_path: Path):
    path = tmp_path / "assignments.csv"
    path.write_text("particle,class\n007,1\n010,2\n7,2\n")
    df = _read_csv(path, "assignments")
    assert df is not None
    assert list(df["particle"]) == ["007", "010", "7"]
    assert list(df["class"]) == [1, 2, 2]


def test_duplicate_names_are_refused(tmp_path: Path):
    path = tmp_path / "assignments.csv"
    path.write_text("particle,class\n007,1\n007,2\n")
    with pytest.raises(DataError, match="duplicate name '007'"):
        _read_csv(path, "assignments")

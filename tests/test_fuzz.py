"""Fuzz corpus: every malformed input gives a clear DataError or a correct read.

For each case of :mod:`fuzz_cases` the data set is read fully (``read_particles`` and
every image or volume through the batch API) and through ``tomohet info``. A case passes
when the read raises a :class:`DataError` naming the file and the field, or returns the
counts the generator knows; any other exception is a failure (a traceback for the user).
The CLI must answer a bad input with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from fuzz_cases import Case, cases

from tomohet.cli.main import main
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import DataError
from tomohet.io import read_particles

CASES = cases()


def read_fully(path: Path) -> tuple[int, int, dict]:
    """(particles, images or subtomograms, meta) after reading every image or volume."""
    p = read_particles(path)
    if isinstance(p, TiltSeriesParticles):
        seen = 0
        for b in p.batches(4):
            assert b.images.shape[-1] == p.optics.box
            assert np.isfinite(b.images.numpy()).all()
            seen += int(b.visible.sum())
        assert seen == int(p.visible.sum())
        return p.n_particles, seen, p.meta
    assert isinstance(p, SubtomogramParticles)
    seen = 0
    for sb in p.batches(2):
        assert tuple(sb.volumes.shape[1:]) == (p.optics.box,) * 3
        if sb.weights is not None:
            assert sb.weights.shape[0] == sb.volumes.shape[0]
        seen += len(sb.index)
    return p.n_particles, seen, p.meta


def _check_error(case: Case, msg: str) -> None:
    assert case.file in msg, f"{case.name}: the message does not name {case.file}: {msg}"
    assert any(f in msg for f in case.fields), \
        f"{case.name}: the message names none of {case.fields}: {msg}"


def test_corpus_covers_every_format():
    assert len(CASES) >= 150
    by_fmt = {c.fmt for c in CASES}
    assert by_fmt == {"relion5", "warp", "relion4", "stopgap", "dynamo"}
    assert len({c.name for c in CASES}) == len(CASES)
    for fmt in by_fmt:  # every format has valid inputs, errors and a CRLF variant
        kinds = {c.expect for c in CASES if c.fmt == fmt}
        assert {"ok", "error"} <= kinds, fmt
        assert any("CRLF" in c.name for c in CASES if c.fmt == fmt), fmt


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fuzz_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = case.build(tmp_path)
    error: DataError | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            n, images, meta = read_fully(entry)
        except DataError as exc:
            error = exc
    if error is not None:
        assert case.expect in ("error", "either"), f"{case.name}: refused: {error}"
        _check_error(case, str(error))
    else:
        assert case.expect in ("ok", "either"), f"{case.name}: read silently"
        assert (n, images) == case.truth, f"{case.name}: wrong counts"
        if "images_read" in meta:
            assert meta["images_read"] == images
            assert meta["rows_in_file"] >= 1
            assert all(v > 0 for v in meta.get("dropped", {}).values())
        if case.warns:
            assert any(case.warns in str(w.message) for w in caught), \
                f"{case.name}: no warning about {case.warns}"
    capsys.readouterr()
    rc = main(["info", str(entry)])
    err = capsys.readouterr().err.strip()
    if error is None:
        assert rc == 0, err
    elif case.deep and rc == 0:
        pass  # found only when the pixels are read, which info does not do
    else:
        assert rc != 0
        assert len(err.splitlines()) == 1, err
        assert case.file in err, err

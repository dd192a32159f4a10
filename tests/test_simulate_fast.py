"""``tomohet simulate --n N --fast`` adds tomograms so that N particles fit apart."""

import starfile

from tomohet.cli import simulate as simulate_cli
from tomohet.cli.main import main


def test_fast_adds_tomograms_for_many_particles(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(simulate_cli, "FAST_PER_TOMOGRAM", 7)
    out = tmp_path / "sim"
    assert main(["simulate", "--preset", "demo", "--n", "30", "--fast",
                 "--out", str(out)]) == 0
    assert "5 tomograms of at most 7 particles" in capsys.readouterr().out
    stars = sorted(out.rglob("*tomograms*.star"))
    assert stars, "no tomograms star written"
    tomos = starfile.read(stars[0])
    table = tomos if not isinstance(tomos, dict) else next(iter(tomos.values()))
    assert len(table) == 5

"""A discrete run's per-class local resolution: class_NNN_locres.mrc, summary.json, figure."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch

from tomohet.io import read_mrc
from tomohet.methods.base import default_mask
from tomohet.methods.outputs import _write_evidence, _write_maps
from tomohet.physics.local_resolution import local_resolution


def _run(box: int = 24, seed: int = 0) -> SimpleNamespace:
    """A fitted-method stand-in: class 1 well resolved, class 2 noisy, class 3 empty, a
    focus mask off-centre."""
    g = torch.Generator().manual_seed(seed)
    sig = torch.randn((box,) * 3, generator=g)

    def half(noise: float) -> torch.Tensor:
        return sig + noise * torch.randn((box,) * 3, generator=g)

    halves = torch.stack([torch.stack([half(0.3), half(0.3)]),
                          torch.stack([half(1.5), half(1.5)]),
                          torch.zeros(2, box, box, box)])
    c = torch.arange(box, dtype=torch.float32)
    r = torch.sqrt((c[:, None, None] - 14) ** 2 + (c[None, :, None] - 10) ** 2
                   + (c[None, None, :] - 12) ** 2)
    return SimpleNamespace(half_volumes_=halves, class_volumes_=halves.mean(1),
                           priors_=np.array([0.6, 0.4, 0.0]), focus_mask_=(r <= 5).float(),
                           discovery_=None, mask_radius_A=None, history_=[])


def test_summary_and_maps_give_each_class_with_particles_its_local_resolution(tmp_path):
    px = 4.0
    run = _run()
    _write_evidence(run, tmp_path, px)
    summary = json.loads((tmp_path / "summary.json").read_text())
    med = summary["class_local_resolution_in_focus_A"]
    assert summary["local_resolution_region"] == "focus mask"
    assert med[2] is None  # the empty class
    assert 2 * px <= med[0] < med[1]  # the noisier class is worse resolved
    written, failed = _write_maps(run, tmp_path, px)
    assert not failed
    assert {"class_001_locres.mrc", "class_002_locres.mrc"} <= set(written)
    assert not (tmp_path / "class_003_locres.mrc").exists()
    # the file is the kernel's map in the reference mask, 0 outside; the median is over
    # the focus mask
    ref = default_mask(24)
    h = run.half_volumes_
    window = summary["local_resolution_window_A"]
    want = local_resolution(h[:2, 0], h[:2, 1], px, window_A=window, mask=ref).numpy()
    for c in range(2):
        got, size = read_mrc(tmp_path / f"class_{c + 1:03d}_locres.mrc")
        assert size == px
        np.testing.assert_allclose(got, np.nan_to_num(want[c], nan=0.0), rtol=1e-6)
        focus = (run.focus_mask_.numpy() >= 0.5) & (ref.numpy() >= 0.5)
        assert med[c] == round(float(np.median(want[c][focus])), 1)
    assert (np.asarray(read_mrc(tmp_path / "class_001_locres.mrc")[0])[ref.numpy() < 0.5]
            == 0).all()


def test_figure_is_written(tmp_path):
    from tomohet.methods.locres import class_local_resolution, plot_local_resolution

    run = _run(seed=1)
    result = class_local_resolution(run, 4.0)
    assert result is not None and result.classes == [0, 1]
    plot_local_resolution(result, run.class_volumes_, tmp_path / "local_resolution.png")
    assert (tmp_path / "local_resolution.png").read_bytes()[:4] == b"\x89PNG"


def test_no_focus_uses_the_reference_mask_and_no_halves_writes_nothing(tmp_path):
    run = _run(seed=2)
    run.focus_mask_ = None
    _write_evidence(run, tmp_path, 4.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["local_resolution_region"] == "reference mask"
    run = _run(seed=3)
    run.half_volumes_ = None
    _write_evidence(run, tmp_path, 4.0)
    assert "class_local_resolution_in_focus_A" not in json.loads(
        (tmp_path / "summary.json").read_text())

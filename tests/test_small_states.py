"""Issue 12: a component of ~5% of the mass is found without the true maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import blob_volume, complex_points, make_tilt_set

from tomohet.methods.ml import ML2D, ML3D

torch.set_num_threads(1)

BOX = 24


@pytest.fixture(scope="module")
def small_component():
    base = complex_points()
    cap = (8.0, 1.0, -1.0)  # one blob on the surface: 1 / 21 = 4.8% of the mass
    vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [cap])])
    labels = np.arange(120) % 2
    particles, lab, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.3, seed=5,
                                      volumes=vols, labels=labels)
    return particles, lab


@pytest.mark.parametrize("cls", [ML2D, ML3D])
def test_ml_finds_a_five_percent_component(cls, small_component):
    """With the defaults (focus_mask="auto", init="components"), no options."""
    particles, labels = small_component
    m = cls(n_classes=2, n_iter=6, random_state=0, progress=False).fit(particles)
    assert m.discovery_ is not None and m.discovery_.region == "local"
    assert m.focus_mask_ is not None
    assert adjusted_rand_score(labels, m.predict()) > 0.9


def test_shc_finds_a_five_percent_component(small_component):
    from tomohet.methods.shc import SHC

    particles, labels = small_component
    m = SHC(n_classes=2, n_iter=5, n_runs=2, anneal_iters=2, random_state=0,
            progress=False).fit(particles)
    assert m.discovery_ is not None and m.discovery_.focus is not None
    assert adjusted_rand_score(labels, m.predict()) > 0.9


def _corr(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> float:
    a, b = (a - a.mean()) * w, (b - b.mean()) * w
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


def test_focused_run_writes_full_maps_and_evidence(small_component, tmp_path):
    """After focused classification the written class maps are full maps: outside the
    focus mask they correlate with the true volumes as well as inside (the focused
    reconstruction has that signal subtracted: ~0 there). Discovery's mask, z-map, the
    class difference and the verdict are written."""
    from tomohet.io import read_mrc

    particles, labels = small_component
    m = ML2D(n_classes=2, n_iter=6, random_state=0, progress=False).fit(particles)
    m.save(tmp_path, particles)
    truth = torch.stack([blob_volume(BOX, complex_points()),
                         blob_volume(BOX, complex_points() + [(8.0, 1.0, -1.0)])])
    lab = m.predict()
    outside = 1.0 - m.focus_mask_
    for c in range(2):
        true = truth[np.bincount(labels[lab == c], minlength=2).argmax()]
        vol = torch.as_tensor(read_mrc(tmp_path / f"class_{c + 1:03d}.mrc")[0])
        assert _corr(vol, true, outside) > 0.8
        assert _corr(vol, true, torch.ones_like(vol)) > 0.8
    focus, _ = read_mrc(tmp_path / "focus_mask.mrc")
    assert np.allclose(focus, m.focus_mask_.numpy(), atol=1e-6)
    assert read_mrc(tmp_path / "variance_z.mrc")[0].shape == tuple(m.discovery_.z.shape)
    # the mask the region was finally split in (redrawn from its split) lies on the
    # component: it holds more of the true difference than of the complex
    assert len(m.discovery_.split_regions) >= 1
    region, _ = read_mrc(tmp_path / "region_1_mask.mrc")
    assert np.allclose(region, m.discovery_.split_regions[0].numpy(), atol=1e-6)
    assert (tmp_path / "regions.png").read_bytes()[:4] == b"\x89PNG"
    d_abs = (truth[1] - truth[0]).abs().numpy()
    assert (region * d_abs).sum() / d_abs.sum() > 0.5
    assert (region * truth[0].numpy()).sum() / truth[0].numpy().sum() < 0.5
    diff = torch.as_tensor(read_mrc(tmp_path / "diff_1_2.mrc")[0])
    true_diff = truth[1] - truth[0]
    assert abs(_corr(diff, true_diff, torch.ones_like(diff))) > 0.5
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["heterogeneity_found"] is True
    assert summary["discovery"]["region"] == "local"
    assert (tmp_path / "class_fsc_focus.csv").exists()


def test_ml2d_low_snr_needs_the_discovery():
    """At SNR 0.1 random starts stay at chance on this set (``focus_mask=None,
    init="random"``, the defaults before issue 12: ARI 0.13 when this test was written);
    the default focus + components start finds the component (0.87 with a whole-box FSC
    in the focused M-step, 0.75 with the FSC inside the focus mask, which lifted the
    box-48 ladder cells from 0.48 / 0.56 to 0.93 / 0.99: at this SNR and box 24 the
    masked FSC over-estimates the SNR a little)."""
    base = complex_points()
    vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [(8.0, 1.0, -1.0)])])
    particles, labels, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.1, seed=5,
                                         volumes=vols, labels=np.arange(120) % 2)
    m = ML2D(n_classes=2, n_iter=6, random_state=0, progress=False).fit(particles)
    assert adjusted_rand_score(labels, m.predict()) > 0.7

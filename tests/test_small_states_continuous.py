"""Issue 12, continuous methods: a ~5%-mass component is found by wmdpca and ppca2d
with their defaults, which restrict the features (wmdpca) or eigenvolumes (ppca2d) to the
region the discovery step finds (``mask="auto"`` / ``focus_mask="auto"``), clustered with
k-means at K = the number of states. Without local heterogeneity the default is exactly
the unfocused method (``mask="sphere"`` / ``focus_mask="none"``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from synthetic import blob_volume, complex_points, make_tilt_set

from tomohet.methods.linear import MultiScale
from tomohet.methods.linear.common import load_mask
from tomohet.methods.linear.ppca2d import PPCA2D
from tomohet.methods.linear.wmdpca import WMDPCA

torch.set_num_threads(1)

BOX = 24
CAP = (8.0, 1.0, -1.0)  # one blob of 21 on the surface: 4.8% of the mass


@pytest.fixture(scope="module")
def small_component():
    base = complex_points()
    vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [CAP])])
    labels = np.arange(120) % 2
    particles, lab, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.3, seed=5,
                                      volumes=vols, labels=labels)
    return particles, lab


def _kmeans_ari(z: np.ndarray, labels: np.ndarray, k: int = 2) -> float:
    pred = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(z)
    return float(adjusted_rand_score(labels, pred))


def _cap_contrast(mask: torch.Tensor) -> tuple[float, float]:
    """Mask value at the cap's voxel and its mean over the far side of the complex."""
    c = BOX // 2
    x, y, z = (int(round(v)) + c for v in CAP)
    far = mask[:, :, : c - 2].mean()  # x < centre - 2: the side without the cap
    return float(mask[z, y, x]), float(far)


def test_defaults_are_auto():
    assert WMDPCA().mask == "auto" and MultiScale().mask == "auto"
    assert PPCA2D().focus_mask == "auto"


def test_wmdpca_default_focuses_on_the_component(small_component):
    particles, labels = small_component
    m = WMDPCA(n_components=2, cluster=None, random_state=0, progress=False).fit(particles)
    assert m.discovery_ is not None and m.discovery_.region == "local"
    assert m.focus_mask_ is not None
    at_cap, far = _cap_contrast(m.focus_mask_)
    assert at_cap > 0.5 and far < 0.1
    assert _kmeans_ari(m.transform(), labels) > 0.9


def test_ppca2d_default_focus_confines_the_eigenvolumes(small_component):
    particles, labels = small_component
    m = PPCA2D(n_components=1, n_iter=6, cluster=None, random_state=0,
               progress=False).fit(particles)
    assert m.focus_mask_ is not None
    at_cap, far = _cap_contrast(m.focus_mask_)
    assert at_cap > 0.5 and far < 0.1
    assert _kmeans_ari(m.transform(), labels) > 0.9
    # the fitted eigenvolume lives where the focus is (regression outside it is noise,
    # the focused fit is not)
    ev = m.eigenvolumes_[0].abs()
    inside = m.focus_mask_ > 0.5
    assert float(ev[inside].mean()) > 3 * float(ev[m.focus_mask_ < 0.01].mean())


@pytest.fixture(scope="module")
def homogeneous():
    """One structure only (no heterogeneity): discovery finds nothing above noise."""
    vol = blob_volume(BOX, complex_points())
    particles, _, _ = make_tilt_set(n=80, box=BOX, n_tilts=11, snr=0.3, seed=5,
                                    volumes=torch.stack([vol, vol]), labels=np.arange(80) % 2)
    return particles


@pytest.mark.parametrize("cls, params, off", [
    (WMDPCA, {"n_components": 2}, {"mask": "sphere"}),
    (PPCA2D, {"n_components": 1, "n_iter": 3}, {"focus_mask": "none"}),
])
def test_default_without_local_variation_is_the_unfocused_method(homogeneous, cls, params,
                                                                  off):
    common = {**params, "cluster": None, "random_state": 0, "progress": False}
    auto = cls(**common).fit(homogeneous)
    plain = cls(**common, **off).fit(homogeneous)
    assert auto.discovery_ is not None and auto.discovery_.region == "none"
    assert auto.focus_mask_ is None and plain.discovery_ is None
    np.testing.assert_array_equal(auto.transform(), plain.transform())
    np.testing.assert_array_equal(auto.eigenvolumes_.numpy(), plain.eigenvolumes_.numpy())


def test_off_words_give_the_unfocused_masks():
    cpu = torch.device("cpu")
    sphere = load_mask(None, 16, 5.0, None, cpu)
    for word in ("sphere", "none", "Sphere"):
        assert torch.equal(load_mask(word, 16, 5.0, None, cpu), sphere)
        assert PPCA2D(focus_mask=word)._focus(None, cpu) is None  # type: ignore[arg-type]


def test_cli_mask_options_reach_the_methods():
    import argparse

    from tomohet.cli.embed import add_parser, method_params

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))

    def params(*argv: str) -> dict:
        return method_params(parser.parse_args(["embed", *argv, "x.star", "--out", "o"]))

    assert params("wmdpca")["mask"] == "auto" and params("multiscale")["mask"] == "auto"
    assert params("ppca2d")["focus_mask"] == "auto"
    assert params("wmdpca", "--mask", "sphere")["mask"] == "sphere"
    assert params("ppca2d", "--focus-mask", "none")["focus_mask"] == "none"
    assert params("ppca2d", "--focus-mask", "roi.mrc")["focus_mask"] == "roi.mrc"


def test_auto_is_not_a_mask_file():
    with pytest.raises(ValueError, match="auto"):
        load_mask("auto", 16, 5.0, None, torch.device("cpu"))
    with pytest.raises(ValueError, match="focus_mask"):
        PPCA2D(focus_mask="everywhere")._focus(None, torch.device("cpu"))  # type: ignore[arg-type]

"""regions.png: what comes and goes in each region (methods/region_view.py)."""

import numpy as np
import pytest

from tomohet.methods.region_view import plot_regions, region_differences

D = 16


def _blob(centre, sd=1.5):
    g = np.indices((D, D, D)).astype(float)
    r2 = sum((g[i] - centre[i]) ** 2 for i in range(3))
    return np.exp(-r2 / (2 * sd**2))


CORE = _blob((8, 8, 8), 3.0)
A, B = _blob((8, 8, 13)), _blob((3, 8, 8))
MASK_A, MASK_B = (A > 0.05).astype(float), (B > 0.05).astype(float)


def _classes(states):
    """Class maps core + a A + b B for (a, b) in ``states``."""
    return np.stack([CORE + a * A + b * B for a, b in states])


def test_difference_is_the_component_whatever_the_class_numbers():
    """Classes in an order that does not spell the regions' bits, one class empty: each
    region's difference is exactly its component (the other component cancels between
    the groups only when it is balanced, so it is: same share of B in both A groups)."""
    states = [(1, 0), (0, 1), (1, 1), (0, 0), (1, 1)]
    priors = np.array([0.3, 0.2, 0.3, 0.2, 0.0])  # the last class empty
    views = region_differences(_classes(states), priors, [MASK_A, MASK_B])
    assert views[0].present == [0, 2] and views[1].present == [1, 2]
    # A present: classes 0 (no B) and 2 (B), 50/50; absent: 1 (B) and 3 (no B), 50/50
    assert np.allclose(views[0].difference, A, atol=1e-12)
    assert views[0].fraction_present == pytest.approx(0.6)
    # B present: 1 (no A, 0.2) and 2 (A, 0.3); absent: 0 (A, 0.3) and 3 (no A, 0.2)
    assert np.allclose(views[1].difference, B, atol=1e-12)
    assert views[1].fraction_present == pytest.approx(0.5)


def test_a_component_always_with_another_shows_in_its_difference():
    """B always with A: B is part of what comes and goes with A (the map shows it,
    outside A's mask)."""
    states = [(1, 1), (0, 0)]
    view = region_differences(_classes(states), np.array([0.5, 0.5]), [MASK_A])[0]
    assert view.present == [0]
    assert np.allclose(view.difference, A + B, atol=1e-12)


def test_equal_classes_and_one_class_give_no_difference():
    same = _classes([(1, 0), (1, 0)])
    assert region_differences(same, np.array([0.5, 0.5]), [MASK_A])[0].difference is None
    one = region_differences(_classes([(1, 0), (0, 0)]), np.array([1.0, 0.0]), [MASK_A])[0]
    assert one.difference is None and one.present == [0]
    with pytest.raises(ValueError, match="do not match"):
        region_differences(_classes([(1, 0), (0, 0)]), np.array([1.0]), [MASK_A])


def test_plot_regions_writes_a_png(tmp_path):
    states = [(1, 1), (1, 0), (0, 1), (0, 0)]
    path = tmp_path / "regions.png"
    plot_regions(_classes(states), np.full(4, 0.25), [MASK_A, MASK_B], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

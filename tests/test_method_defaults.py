"""The defaults every method shares (methods/base.py): mask, device, seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet.methods.base import (
    check_random_state,
    default_mask,
    default_mask_radius_px,
    resolve_device,
    seed_of,
)


@pytest.mark.parametrize("box", [16, 24, 32, 64, 100])
def test_default_mask_radius_keeps_a_margin_of_two_pixels_or_six_percent(box):
    margin = 2.0 if box <= 33 else 0.06 * box  # 0.06 * 33.3 = 2
    assert default_mask_radius_px(box) == pytest.approx(box / 2 - margin)


@pytest.mark.parametrize("box", [16, 64])
def test_default_mask_is_one_inside_zero_outside_half_at_the_mid_edge(box):
    m = default_mask(box).numpy()
    assert m.shape == (box,) * 3
    # distances from the centre voxel box // 2, computed here independently of physics
    idx = np.indices((box,) * 3) - box // 2
    r = np.sqrt((idx**2).sum(0))
    radius, edge = default_mask_radius_px(box), max(2.0, 0.05 * box)
    assert np.all(m[r <= radius] == 1.0)
    assert np.all(m[r >= radius + edge] == 0.0)
    ring = (r > radius) & (r < radius + edge)
    expected = 0.5 * (1 + np.cos(np.pi * (r[ring] - radius) / edge))
    np.testing.assert_allclose(m[ring], expected, atol=1e-6)


def test_default_mask_radius_in_angstrom():
    m = default_mask(32, radius_A=30.0, pixel_size_A=5.0).numpy()
    line = m[16, 16, 16:]  # along x from the centre: 1 up to 6 px, 0 from 6 + 2 px on
    assert np.all(line[:7] == 1.0) and np.all(line[8:] == 0.0) and 0 < line[7] < 1
    with pytest.raises(ValueError, match="pixel size"):
        default_mask(32, radius_A=30.0)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_seed_of_and_check_random_state():
    assert seed_of(None) == 0 and seed_of(7) == 7 and seed_of(np.int64(7)) == 7
    for bad in (1.5, True, "3"):
        with pytest.raises(ValueError, match="random_state"):
            seed_of(bad)
    a = check_random_state(5, offset=2).random(4)
    np.testing.assert_array_equal(a, np.random.default_rng(7).random(4))
    np.testing.assert_array_equal(check_random_state(None).random(3),
                                  np.random.default_rng(0).random(3))
    g = np.random.default_rng(1)
    assert check_random_state(g) is g  # a Generator is used, not copied


def test_linear_methods_use_the_default_mask():
    from tomohet.methods.linear.common import load_mask

    box, px = 24, 4.0
    assert torch.equal(load_mask(None, box, px, None, torch.device("cpu")), default_mask(box))
    assert torch.equal(load_mask(None, box, px, 20.0, torch.device("cpu")),
                       default_mask(box, 20.0, px))
    user = np.random.default_rng(0).random((box,) * 3) * 2 - 0.5
    got = load_mask(user, box, px, None, torch.device("cpu"))
    assert torch.equal(got, torch.as_tensor(user, dtype=torch.float32).clamp(0, 1))
    with pytest.raises(ValueError, match="does not match box"):
        load_mask(np.zeros((8, 8, 8)), box, px, None, torch.device("cpu"))

"""Numerical kernels against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tomohet.physics import ctf as ctfm
from tomohet.physics.fourier import (
    ft_to_image,
    ft_to_volume,
    image_to_ft,
    shift_phase_2d,
    volume_to_ft,
)
from tomohet.physics.fsc import fsc, resolution_at
from tomohet.physics.geometry import (
    euler_to_matrix,
    matrix_to_euler,
    random_rotations,
    small_rotation,
    tilt_angle_from_matrix,
    tilt_matrix,
)
from tomohet.physics.projection import (
    Backprojector,
    VolumeProjector,
    project_volumes,
    volumes_from_sums,
)

torch.set_num_threads(1)


def relion_euler(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix, element by element (published formula)."""
    a, b, g = map(math.radians, (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = (math.cos(a), math.sin(a), math.cos(b), math.sin(b),
                              math.cos(g), math.sin(g))
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])


def gaussian_points_volume(box: int, points: torch.Tensor, sigma: float) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.zeros((box, box, box))
    for p in points:
        vol += torch.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2) / (2 * sigma**2))
    return vol


def analytic_projection(box: int, points: torch.Tensor, sigma: float, rot: torch.Tensor):
    c = torch.arange(box, dtype=torch.float32) - box // 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    q = (rot @ points.T).T
    img = torch.zeros((box, box))
    for p in q:
        img += sigma * math.sqrt(2 * math.pi) * torch.exp(
            -((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * sigma**2))
    return img


# ---------------------------------------------------------------- geometry
@pytest.mark.parametrize("angles", [(10, 20, 30), (-170, 95, 45), (0, 0, 75), (33, 180, 12),
                                    (250, 60, -80)])
def test_euler_matches_relion_formula(angles):
    got = euler_to_matrix(*[torch.tensor(float(a), dtype=torch.float64) for a in angles])
    np.testing.assert_allclose(got.numpy(), relion_euler(*angles), atol=1e-12)


def test_euler_round_trip():
    gen = torch.Generator().manual_seed(1)
    rots = random_rotations(500, gen, dtype=torch.float64)
    angles = matrix_to_euler(rots)
    back = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    np.testing.assert_allclose(back.numpy(), rots.numpy(), atol=1e-9)
    # the gimbal-lock branch
    lock = euler_to_matrix(torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(40.0, dtype=torch.float64))
    np.testing.assert_allclose(matrix_to_euler(lock).numpy(), [0, 0, 40], atol=1e-9)


def test_rotation_matrices_are_proper():
    rots = random_rotations(100, torch.Generator().manual_seed(2), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    np.testing.assert_allclose((rots @ rots.transpose(1, 2)).numpy(), eye.numpy(), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(rots).numpy(), 1.0, atol=1e-12)


def test_tilt_matrix_and_inverse():
    tilts = torch.tensor([-60.0, -3.0, 0.0, 27.0, 60.0], dtype=torch.float64)
    m = tilt_matrix(tilts)
    # a point at height z on the tilt axis projects to x = sin(tilt) z
    p = torch.tensor([0.0, 0.0, 10.0], dtype=torch.float64)
    np.testing.assert_allclose((m @ p)[:, 0].numpy(), 10 * np.sin(np.radians(tilts.numpy())),
                               atol=1e-12)
    # in-plane rotation after the tilt does not change the recovered angle
    inplane = euler_to_matrix(torch.zeros(5, dtype=torch.float64),
                              torch.zeros(5, dtype=torch.float64),
                              torch.full((5,), 85.0, dtype=torch.float64))
    np.testing.assert_allclose(tilt_angle_from_matrix(inplane @ m).numpy(), tilts.numpy(),
                               atol=1e-9)


def test_small_rotation_angle():
    v = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    r = small_rotation(v)
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    np.testing.assert_allclose(np.degrees(np.arccos(cos.numpy())), [5.0, 3.0], atol=1e-9)


# ---------------------------------------------------------------- CTF / dose
def test_ctf_hand_computed_value():
    box, px = 64, 2.0
    params = ctfm.CtfParams(300.0, 2.7, 0.1)
    du, dv, ang = 20000.0, 16000.0, 30.0
    c = ctfm.ctf_2d(torch.tensor(du, dtype=torch.float64), torch.tensor(dv, dtype=torch.float64),
                    torch.tensor(ang, dtype=torch.float64), box, px, params)
    iy, ix = 5, 7  # frequency (7, 5) / (64 * 2 A)
    kx, ky = ix / (box * px), iy / (box * px)
    lam = 12.2643247 / math.sqrt(300e3 * (1 + 300e3 * 0.978466e-6))
    azim = math.atan2(ky, kx)
    deltaf = -(du + dv) / 2 - (du - dv) / 2 * math.cos(2 * (azim - math.radians(ang)))
    u2 = kx**2 + ky**2
    chi = (math.pi * lam * deltaf * u2 + math.pi / 2 * 2.7e7 * lam**3 * u2**2
           - math.atan(0.1 / math.sqrt(1 - 0.01)))
    assert abs(lam - 0.019687) < 1e-5
    assert c[iy, ix].item() == pytest.approx(-math.sin(chi), abs=1e-10)
    assert c[0, 0].item() == pytest.approx(0.1, abs=1e-10)  # amplitude contrast at DC


@pytest.mark.parametrize("du, dv, angle", [(25000.0, 25000.0, 0.0), (26000.0, 21000.0, 30.0),
                                            (18000.0, 23000.0, -65.0)])
def test_ctf_matches_torch_ctf(du, dv, angle):
    """Against teamtomo's torch-ctf, astigmatic too: its defocus(phi) = D + A cos 2(phi -
    theta) (micrometres, A >= 0) is RELION's with D = (dU + dV) / 2, A = (dU - dV) / 2 and
    theta = the defocus angle (+ 90 degrees when dV > dU)."""
    torch_ctf = pytest.importorskip("torch_ctf")
    box, px = 48, 3.0
    ours = ctfm.ctf_2d(torch.tensor(du), torch.tensor(dv), torch.tensor(angle), box, px,
                       ctfm.CtfParams(300.0, 2.7, 0.07))
    astig, theta = abs(du - dv) / 2e4, angle + (90.0 if dv > du else 0.0)
    ref = torch_ctf.calculate_ctf_2d(
        defocus=(du + dv) / 2e4, astigmatism=astig, astigmatism_angle=theta,
        voltage=300.0, spherical_aberration=2.7, amplitude_contrast=0.07, phase_shift=0.0,
        pixel_size=px, image_shape=(box, box), rfft=True, fftshift=False)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=2e-3)
    if du != dv:  # the astigmatism matters: the same CTF without it differs
        stig = ctfm.ctf_2d(torch.tensor(du), torch.tensor(du), torch.tensor(angle), box, px,
                           ctfm.CtfParams(300.0, 2.7, 0.07))
        assert float((stig - ref).abs().max()) > 0.5


def test_ctf_zeros_where_theory_puts_them():
    box, px, df = 256, 1.0, 15000.0
    c = ctfm.ctf_2d(torch.tensor(df, dtype=torch.float64), torch.tensor(df, dtype=torch.float64),
                    torch.tensor(0.0, dtype=torch.float64), box, px, ctfm.CtfParams(300, 0.0, 0.0))
    # with Cs = 0 and Q0 = 0, zeros at u^2 = n / (lambda df)
    lam = ctfm.electron_wavelength_A(300)
    u1 = math.sqrt(1 / (lam * df))
    row = c[0].numpy()
    u = np.arange(len(row)) / (box * px)
    i = np.argmin(np.abs(u - u1))
    assert abs(row[i]) < 0.1 and abs(row[i // 2]) > 0.5


def test_exposure_filter_known_frequency():
    box, px = 64, 2.0
    f = ctfm.exposure_filter(torch.tensor([0.0, 10.0]), box, px)
    ix = 16  # u = 16 / 128 = 0.125 1/A
    u = ix / (box * px)
    ne = 0.245 * u**-1.665 + 2.81
    assert f[0, 0, ix].item() == pytest.approx(1.0)
    assert f[1, 0, ix].item() == pytest.approx(math.exp(-10 / (2 * ne)), rel=1e-5)
    # at 40 e/A^2 a 4.1 A frequency (Ne = 5.4) is past 2.51 Ne, a 128 A one is not
    mask = ctfm.dose_mask(torch.tensor([40.0]), box, px)[0]
    assert mask[0, 1] and not mask[0, 31]


def test_depth_defocus_offset():
    p = tilt_matrix(torch.tensor([0.0, 30.0], dtype=torch.float64))
    pos = torch.tensor([100.0, 0.0, 200.0], dtype=torch.float64)
    dz = ctfm.depth_defocus_offset_A(p, pos, handedness=-1.0)
    np.testing.assert_allclose(dz.numpy(), [-200.0, -(-0.5 * 100 + math.cos(math.pi / 6) * 200)],
                               atol=1e-9)


# ---------------------------------------------------------------- Fourier helpers
def test_fourier_round_trips_and_shift():
    g = torch.Generator().manual_seed(3)
    img = torch.randn(4, 24, 24, generator=g)
    np.testing.assert_allclose(ft_to_image(image_to_ft(img)).numpy(), img.numpy(), atol=1e-5)
    vol = torch.randn(16, 16, 16, generator=g)
    np.testing.assert_allclose(ft_to_volume(volume_to_ft(vol)).numpy(), vol.numpy(), atol=1e-5)
    shifted = ft_to_image(image_to_ft(img) * shift_phase_2d(torch.tensor([3.0, -2.0]), 24))
    np.testing.assert_allclose(shifted.numpy(), torch.roll(img, (-2, 3), (-2, -1)).numpy(),
                               atol=1e-4)


# ---------------------------------------------------------------- projection
POINTS = torch.tensor([[3.0, -2.0, 5.0], [-4.0, 6.0, -1.0], [0.0, 0.0, -7.0], [6.0, 5.0, 2.0]])


@pytest.mark.parametrize("angles", [(0, 0, 0), (10, 30, 5), (70, 120, -60), (-100, 45, 200),
                                    (30, 60, 90)])
def test_projection_matches_analytic_gaussians(angles):
    box, sigma = 32, 2.0
    vol = gaussian_points_volume(box, POINTS, sigma)
    rot = euler_to_matrix(*[torch.tensor(float(a)) for a in angles])[None]
    img = project_volumes(vol, rot)[0, 0]
    ana = analytic_projection(box, POINTS, sigma, rot[0])
    corr = torch.corrcoef(torch.stack([img.flatten(), ana.flatten()]))[0, 1]
    assert corr > 0.999
    assert (img - ana).abs().max() < 0.05 * ana.max()


def _centroid(img: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre (last axis first), in pixels."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in img.shape],
                           indexing="ij")
    w = img.double().clamp_min(0)
    return torch.stack([(g * w).sum() / w.sum() for g in reversed(grids)])


@pytest.mark.parametrize("box", [25, 31])
def test_odd_box_projection_matches_analytic_gaussian(box):
    """Odd boxes: an off-centre blob lands where the analytic projection puts it (box
    centre at pixel D // 2). Before the fix the padded volume sat one voxel off the
    transform origin and every projection moved by one pixel."""
    sigma = 2.0
    pts = torch.tensor([[3.0, -2.0, 1.0]])
    vol = gaussian_points_volume(box, pts, sigma)
    rot = euler_to_matrix(torch.tensor([0.0, 35.0]), torch.tensor([0.0, 70.0]),
                          torch.tensor([0.0, -20.0]))
    imgs = project_volumes(vol, rot)[0]
    for i in range(2):
        ana = analytic_projection(box, pts, sigma, rot[i])
        assert torch.corrcoef(torch.stack([imgs[i].flatten(), ana.flatten()]))[0, 1] > 0.999
        assert (imgs[i] - ana).abs().max() < 0.05 * ana.max()
        assert float((_centroid(imgs[i]) - _centroid(ana)).abs().max()) < 0.25


def test_odd_box_backprojection_of_analytic_projections():
    """Back-projecting analytic projections (no projector involved) into an odd box
    reconstructs the blob where it is."""
    box, pts = 21, torch.tensor([[3.0, -2.0, 1.0]])
    vol = gaussian_points_volume(box, pts, 2.0)
    rot = random_rotations(400, torch.Generator().manual_seed(1))
    slices = image_to_ft(torch.stack([analytic_projection(box, pts, 2.0, r) for r in rot]))
    bp = Backprojector(box, pad=2)
    bp.insert(slices, torch.ones(slices.shape), rot)
    rec = volumes_from_sums(*bp.grids(), box, 1e-3)[0]
    assert torch.corrcoef(torch.stack([rec.flatten(), vol.flatten()]))[0, 1] > 0.995
    assert float((_centroid(rec) - _centroid(vol)).abs().max()) < 0.1


def test_projection_with_tilts_composes():
    box, sigma = 32, 2.0
    vol = gaussian_points_volume(box, POINTS, sigma)
    a = euler_to_matrix(torch.tensor(40.0), torch.tensor(70.0), torch.tensor(-20.0))
    tilts = tilt_matrix(torch.tensor([-60.0, -30.0, 0.0, 45.0]))
    full = tilts @ a
    imgs = project_volumes(vol, full)[0]
    for i in range(4):
        ana = analytic_projection(box, POINTS, sigma, full[i])
        assert torch.corrcoef(torch.stack([imgs[i].flatten(), ana.flatten()]))[0, 1] > 0.999


def test_projection_matches_torch_fourier_slice():
    tfs = pytest.importorskip("torch_fourier_slice")
    box = 32
    vol = gaussian_points_volume(box, POINTS, 2.5)
    rot = euler_to_matrix(torch.tensor([20.0, 100.0]), torch.tensor([50.0, 80.0]),
                          torch.tensor([10.0, -30.0]))
    ours = project_volumes(vol, rot)[0]
    # teamtomo rotates the sampling grid: it expects A.T for RELION's A
    ref = tfs.project_3d_to_2d(vol, rot.transpose(-1, -2), pad_factor=2.0)
    for i in range(2):
        assert torch.corrcoef(torch.stack([ours[i].flatten(), ref[i].flatten()]))[0, 1] > 0.99


def test_multiple_volumes_project_independently():
    box = 24
    v1 = gaussian_points_volume(box, POINTS[:2], 2.0)
    v2 = gaussian_points_volume(box, POINTS[2:], 2.0)
    rot = random_rotations(3, torch.Generator().manual_seed(5))
    both = VolumeProjector(torch.stack([v1, v2])).slices(rot)
    one = VolumeProjector(v2).slices(rot)
    np.testing.assert_allclose(both[1].numpy(), one[0].numpy(), atol=1e-4)


def test_project_backproject_round_trip():
    box = 32
    vol = gaussian_points_volume(box, POINTS, 2.0)
    rot = random_rotations(1500, torch.Generator().manual_seed(0))
    slices = VolumeProjector(vol).slices(rot)[0]
    bp = Backprojector(box, pad=2)
    bp.insert(slices, torch.ones(slices.shape), rot)
    data, weight = bp.grids()
    rec = volumes_from_sums(data, weight, box, 1e-3)[0]
    corr = torch.corrcoef(torch.stack([rec.flatten(), vol.flatten()]))[0, 1]
    assert corr > 0.999
    assert (rec - vol).abs().max() < 0.03


def test_backprojection_of_missing_wedge_leaves_wedge_empty():
    box = 24
    tilts = tilt_matrix(torch.arange(-60.0, 61.0, 3.0))
    slices = torch.ones((len(tilts), box, box // 2 + 1), dtype=torch.complex64)
    bp = Backprojector(box, pad=1)
    bp.insert(slices, torch.ones(slices.shape), tilts)
    _, weight = bp.grids()
    w = weight[0]
    c = box // 2
    # along the beam direction at 0 tilt (z) beyond +-60 deg: the wedge is empty
    assert w[c + 8, c, c] == 0  # pure kz
    assert w[c, c, c + 8] > 0  # pure kx is in every slice


# ---------------------------------------------------------------- FSC
def test_fsc_identical_and_independent():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(32, 32, 32, generator=g)
    b = torch.randn(32, 32, 32, generator=g)
    np.testing.assert_allclose(fsc(a, a).numpy(), 1.0, atol=1e-5)
    assert fsc(a, b)[6:].abs().mean() < 0.05  # low shells hold few voxels: ~1/sqrt(n)
    batch = fsc(torch.stack([a, a]), torch.stack([a, b]))
    assert batch.shape == (2, 17) and batch[0, 5] > 0.999 and abs(batch[1, 5]) < 0.2


def test_fsc_matches_teamtomo():
    tfsc = pytest.importorskip("torch_fourier_shell_correlation")
    g = torch.Generator().manual_seed(6)
    a = torch.randn(24, 24, 24, generator=g)
    b = a + 0.8 * torch.randn(24, 24, 24, generator=g)
    ref = tfsc.fsc(a, b)
    ours = fsc(a, b)
    n = min(len(ref), len(ours))
    np.testing.assert_allclose(ours[1:n - 1].numpy(), ref[1:n - 1].numpy(), atol=0.05)


def test_resolution_at_threshold():
    curve = np.array([1.0, 0.9, 0.5, 0.1, 0.0])  # box 8
    # crosses 0.143 between shells 2 (0.5) and 3 (0.1): f = (2 + 0.8925) / (8 px)
    res = resolution_at(curve, 2.0, 0.143)
    assert res == pytest.approx(16.0 / 2.8925, rel=1e-3)


def test_fsc_auc_is_the_trapezoid_area():
    from scipy.integrate import trapezoid

    from tomohet.physics.fsc import fsc_auc

    curve = np.array([1.0, 0.97, 0.8, 0.55, 0.3, 0.12, 0.05, -0.02, 0.01])
    expected = trapezoid(curve[1:], dx=1.0 / (len(curve) - 2))
    assert fsc_auc(curve) == pytest.approx(expected, rel=1e-12)
    assert fsc_auc(np.ones(17)) == pytest.approx(1.0)
    assert fsc_auc(torch.tensor([1.0, 0.4])) == pytest.approx(0.4)


@pytest.mark.parametrize("kind", ["soft", "hard", "sparse"])
def test_multi_volume_insert_equals_weighted_single_inserts(kind):
    """Sparse multi-volume insertion == inserting slice x weight into each volume alone."""
    from tomohet.physics.geometry import random_rotations
    from tomohet.physics.projection import Backprojector

    g = torch.Generator().manual_seed(0)
    n, d, k = 40, 16, 5
    sl = torch.randn(n, d, d // 2 + 1, dtype=torch.complex64, generator=g)
    w = torch.rand(n, d, d // 2 + 1, generator=g)
    rot = random_rotations(n, g)
    vw = {"soft": torch.rand(k, n, generator=g),
          "hard": torch.eye(k)[torch.randint(0, k, (n,), generator=g)].T.contiguous(),
          "sparse": torch.rand(k, n, generator=g) * (torch.rand(k, n, generator=g) > 0.6)}[kind]
    bp = Backprojector(d, k)
    bp.insert(sl, w, rot, volume_weights=vw)
    for v in range(k):
        one = Backprojector(d, 1)
        s = vw[v] * (vw[v] > 1e-4)
        one.insert(sl * s[:, None, None], w * s[:, None, None], rot)
        torch.testing.assert_close(bp.data[v], one.data[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(bp.weight[v], one.weight[0], atol=1e-5, rtol=1e-4)

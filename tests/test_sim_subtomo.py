"""Subtomograms written by the simulator: RELION 4 pseudo-subtomograms and RELION
3.0/3.1-style reconstructions with a 3D CTF volume (tomohet.sim.subtomo)."""

from __future__ import annotations

import numpy as np
import torch

from tomohet.sim import simulate
from tomohet.sim.presets import get_preset


def test_subtomogram_output(tmp_path):
    import mrcfile

    ds = simulate(get_preset("demo", n_particles=4, box=16, n_tomograms=1), seed=0)
    paths = ds.write(tmp_path, formats=(), subtomograms=True)
    vols = sorted((tmp_path / "subtomograms").glob("subtomo_*.mrc"))
    ctfs = sorted((tmp_path / "subtomograms").glob("ctf_*.mrc"))
    assert len(vols) == len(ctfs) == 4 and set(vols) <= set(paths)
    assert mrcfile.read(vols[0]).shape == (16, 16, 16)
    weight = mrcfile.read(ctfs[0])
    assert weight.shape == (16, 16, 9) and weight.min() >= 0 and weight.max() > 0


def test_reconstructed_subtomograms_are_their_3d_ctf_times_the_map(tmp_path):
    """RELION 3.0-style subtomograms from noise-free tilt images of a compact object (a
    smooth transform, so gridding without oversampling is accurate): at low resolution
    the data are the written 3D CTF times the reference rotated into the tomogram frame
    (sampled independently of the back-projection) to within 8%; the files read back as
    non-premultiplied subtomograms with a centred (D, D, D) CTF volume holding that CTF."""
    from synthetic import make_tilt_set

    from tomohet.data.prepare import reconstruct_subtomograms
    from tomohet.io import read_particles
    from tomohet.physics.fourier import (
        freq_grid_3d,
        ft_to_volume,
        radial_shell_index,
        volume_to_ft,
    )
    from tomohet.physics.projection import VolumeProjector
    from tomohet.sim.subtomo import write_subtomograms

    c = torch.arange(24, dtype=torch.float32) - 12
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")

    def blob(z, y, x, sd):
        return torch.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * sd * sd))

    obj = (blob(0, 0, 0, 1.5) + 0.5 * blob(1, -1, 1, 1.2))[None]
    parts, labels, vols = make_tilt_set(n=3, box=24, n_tilts=61, snr=0.0, seed=5,
                                        volumes=obj)
    batch = parts.batch(np.arange(3))
    data, ctf = reconstruct_subtomograms(batch, parts.optics)
    freqs = torch.einsum("bji,zyxj->bzyxi", batch.particle_rotation, freq_grid_3d(24))
    ref = VolumeProjector(vols).sample(freqs)[torch.as_tensor(labels), torch.arange(3)]
    shell = radial_shell_index(24, 3)
    sel = (shell >= 2) & (shell <= 5) & (ctf.abs() > 0.3)
    err = (data - ctf * ref)[sel].abs().norm() / (ctf * ref)[sel].abs().norm()
    assert int(sel.sum()) > 500 and float(err) < 0.08  # measured 0.045
    assert float(ctf.abs().max()) <= 1.0 + 1e-5
    write_subtomograms(parts, tmp_path / "sub", style="reconstructed")
    back = read_particles(tmp_path / "sub" / "particles.star")
    assert not back.optics.ctf_premultiplied and back.weight_layout == "centered_full"
    b = back.batch(np.arange(3))
    torch.testing.assert_close(b.weights, ctf, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(volume_to_ft(b.volumes),
                               volume_to_ft(ft_to_volume(data, box=24)), atol=1e-4, rtol=1e-4)

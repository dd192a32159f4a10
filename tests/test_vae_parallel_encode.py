"""The VAE's passes over the whole set on 2 gloo ranks (spawned here, CPU): for the
consensus, the noise power and the encoding each rank reads and transforms only its
blocks of particles; the consensus and noise (sums over ranks) and the latents encoded
against them equal those of one rank within float rounding (bit for bit with the native
kernels; ATEN_CPU_CAPABILITY=default in a shuffled order gave 2.4e-7 on the latents)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ranks import as_rank
from synthetic import make_tilt_set

from tomohet import parallel

torch.set_num_threads(1)
N, BATCH = 27, 4  # 7 blocks: 4 on rank 0, 3 on rank 1


def _encode(out: Path) -> None:
    from tomohet.data.keys import half_sets
    from tomohet.methods.vae import TiltVAEMethod
    from tomohet.methods.vae.model import TiltVAE
    from tomohet.methods.vae.reference import consensus_volume, noise_power
    from tomohet.methods.vae.stream import stream_samples
    from tomohet.methods.vae.train import encode_all
    from tomohet.physics.projection import VolumeProjector

    p, _, _ = make_tilt_set(n=N, box=16, n_tilts=7, snr=1.0, seed=4)
    config = TiltVAEMethod(zdim=3, enc_dim=16, dec_dim=16, random_state=5).model_config(16)
    model = TiltVAE(config)  # initialised from the seed: the same model on every rank
    source = stream_samples(p, np.arange(N), p.visible)
    seen: list[int] = []
    gather = source.gather

    def counting(rows, slots):
        seen.extend(int(r) for r in rows)
        return gather(rows, slots)

    object.__setattr__(source, "gather", counting)  # frozen dataclass: patch this one
    halves = half_sets(p.names, p.tomo_names)
    vol, _fsc = consensus_volume(source, torch.device("cpu"), halves, batch=BATCH)
    noise = noise_power(source, VolumeProjector(vol), torch.device("cpu"), batch=BATCH)
    mu, lv = encode_all(model, source, batch=BATCH)
    world, me = parallel.world(), parallel.rank()
    (out / f"seen_{world}_{me}.json").write_text(json.dumps(seen))
    for name, value in (("mu", mu), ("lv", lv), ("vol", vol), ("noise", noise)):
        np.save(out / f"{name}_{world}_{me}.npy", value.numpy())


def test_passes_split_over_two_ranks_equal_one_rank(tmp_path):
    parallel.spawn(as_rank, 2, (_encode, tmp_path), timeout_s=120)
    _encode(tmp_path)
    seen = {k: json.loads((tmp_path / f"seen_{k}.json").read_text())
            for k in ("1_0", "2_0", "2_1")}
    blocks = [list(range(s, min(N, s + BATCH))) for s in range(0, N, BATCH)]
    assert seen["1_0"] == list(range(N)) * 3  # consensus, noise, encoding
    assert seen["2_0"] == sum(blocks[0::2], []) * 3
    assert seen["2_1"] == sum(blocks[1::2], []) * 3
    for kind in ("mu", "lv"):
        one = np.load(tmp_path / f"{kind}_1_0.npy")
        assert np.isfinite(one).all() and np.abs(one).max() > 0
        for me in (0, 1):  # every rank ends with every particle's row
            np.testing.assert_allclose(np.load(tmp_path / f"{kind}_2_{me}.npy"), one,
                                       rtol=1e-5, atol=1e-6)
    for kind in ("vol", "noise"):
        one = np.load(tmp_path / f"{kind}_1_0.npy")
        for me in (0, 1):
            np.testing.assert_allclose(np.load(tmp_path / f"{kind}_2_{me}.npy"), one,
                                       rtol=1e-4, atol=1e-5 * np.abs(one).max())

"""vae3d's per-particle passes on R gloo ranks (issue 17): the data store built without a
checkpoint folder (shared in TMPDIR, each rank back-projecting its row blocks) and one
encoding of every particle (each rank its blocks, gathered). One torch thread per rank.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/results/vae3d_shard/measure.py \
        --n 256 --box 32 --ranks 1,2

Prints one JSON line per rank and rank count: wall seconds of build_data and encode_all
(between barriers), this rank's CPU seconds in them (the work it did, whatever the
machine's load; includes waiting in gloo collectives, which spin) and the rows it
back-projected and encoded."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from tomohet import parallel


def _work(n: int, box: int) -> None:
    torch.set_num_threads(1)
    parallel.init_from_env()
    try:
        import tomohet.methods.vae3d.data as vd
        from tomohet.methods.vae3d import Vae3DMethod
        from tomohet.methods.vae3d.train import encode_all
        from tomohet.sim import simulate
        from tomohet.sim.presets import get_preset

        cfg = get_preset("continuous", n_particles=n, n_tomograms=2, box=box, n_tilts=21,
                         snr=1.0)
        particles = simulate(cfg, seed=1).particles
        built, encoded = [0], [0]
        iter_reference = vd.iter_reference

        def building(*args, **kwargs):
            for idx, y, w in iter_reference(*args, **kwargs):
                built[0] += len(idx)
                yield idx, y, w

        vd.iter_reference = building  # type: ignore[assignment]
        parallel.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        data = vd.build_data(particles, None, 8)
        c_build = time.process_time() - c0
        parallel.barrier()
        t_build = time.perf_counter() - t0
        cpu = torch.device("cpu")
        model = Vae3DMethod(zdim=4, progress=False)._start(data, cpu)[0]
        rows = data.rows

        def reading(index):
            encoded[0] += len(np.asarray(index))
            return rows(index)

        data.rows = reading  # type: ignore[method-assign]
        parallel.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        mu, _lv = encode_all(model, data, cpu)
        c_enc = time.process_time() - c0
        parallel.barrier()
        t_enc = time.perf_counter() - t0
        print(json.dumps({"ranks": parallel.world(), "rank": parallel.rank(), "n": n,
                          "box": box, "build_s": round(t_build, 2),
                          "encode_s": round(t_enc, 2),
                          "build_cpu_s": round(c_build, 2), "encode_cpu_s": round(c_enc, 2),
                          "rows_built": built[0],
                          "rows_encoded": encoded[0], "latents": list(mu.shape),
                          "mu_sum": float(mu.double().sum()),
                          "load": os.getloadavg()}), flush=True)
        data.close()
    finally:
        parallel.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--ranks", default="1,2")
    a = ap.parse_args()
    for r in (int(x) for x in a.ranks.split(",")):
        if r == 1:
            _work(a.n, a.box)
        else:
            parallel.spawn(_work, r, (a.n, a.box))


if __name__ == "__main__":
    main()

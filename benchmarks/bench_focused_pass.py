"""Seconds per focused EM pass (a region split's engine: the whole consensus subtracted)
on the ladder cell m05-snr0.05-n300, with the engine's per-stage timings.

    python benchmarks/bench_focused_pass.py [--passes 3] [--threads 1]
"""

import argparse
import dataclasses
import time

import numpy as np
import torch

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.data.keys import half_sets
from tomohet.methods.em import EMEngine, EMState
from tomohet.methods.ml import ML2D


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = simulate_cell(LadderCell(0.05, 0.05, 300), 0, {}).particles
    m = ML2D(n_classes=4, random_state=0, progress=False)
    cpu = torch.device("cpu")
    filtered, keep = m._filter(p)
    ref_mask, _ = m._masks(p, cpu)
    cfg = m._config(cpu)
    halves = half_sets(p.names, p.tomo_names, 0, p.table)[keep]
    plain = EMEngine(filtered, cfg, keep, ref_mask)
    n = len(keep)
    consensus = plain.volumes_from(plain.reconstruct_pass(np.ones((n, 1)), None, halves))[0][0]
    noise = plain.noise_pass(consensus[None], np.zeros(n, dtype=np.int64))
    box = plain.box
    g = np.indices((box, box, box)) - box // 2
    focus = torch.as_tensor(((g[0] - 8) ** 2 + g[1] ** 2 + (g[2] + 5) ** 2 <= 49)
                            .astype(np.float32))
    engine = EMEngine(plain.particles, dataclasses.replace(cfg, n_classes=2), plain.index,
                      ref_mask, focus, consensus, subtract_all=True)
    post = np.eye(2)[np.random.default_rng(0).integers(0, 2, n)]
    state = EMState(volumes=torch.zeros(2, box, box, box), priors=torch.full((2,), 0.5),
                    sigma2=noise.sigma2, posteriors=post, fsc=[])
    seconds = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        engine.em_pass(state, halves)
        seconds.append(round(time.perf_counter() - t0, 2))
    stages = {k: round(v, 1) for k, v in engine.timings.items()}
    print(f"seconds per pass {seconds}; stage totals {stages}")


if __name__ == "__main__":
    main()

"""Peak anonymous RSS (MB) in each phase of discover: ``python phases.py DATA.star``
(run 2026-11-29 on the 2,000-particle set: see README.md in this folder)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/

from bench_parallel import _anon_MB  # noqa: E402

from tomohet.data.keys import half_sets  # noqa: E402
from tomohet.io import read_particles  # noqa: E402
from tomohet.methods import discovery  # noqa: E402
from tomohet.methods.em import EMConfig, EMEngine  # noqa: E402
from tomohet.methods.residual_scan import ResidualScan  # noqa: E402

phase = ["setup"]
peaks: dict[str, float] = {}


def _sample() -> None:
    while True:
        peaks[phase[0]] = max(peaks.get(phase[0], 0.0), _anon_MB())
        time.sleep(0.02)


class _Traced(ResidualScan):
    def __init__(self, *args, **kwargs) -> None:
        phase[0] = "residual pass + stats"
        super().__init__(*args, **kwargs)
        phase[0] = "detection"

    def labels(self, *args, **kwargs) -> np.ndarray:
        phase[0] = "labels"
        return super().labels(*args, **kwargs)


def main() -> None:
    torch.set_num_threads(1)
    threading.Thread(target=_sample, daemon=True).start()
    p = read_particles(sys.argv[1])
    n = p.n_particles
    eng = EMEngine(p, EMConfig(n_classes=1, batch_size=32), np.arange(n))
    halves = half_sets(p.names, p.tomo_names, 0, p.table)
    cons = eng.volumes_from(eng.reconstruct_pass(np.ones((n, 1)), None, halves))[0][0]
    noise = eng.noise_pass(cons[None], np.zeros(n, dtype=np.int64))
    phase[0] = "before"
    time.sleep(0.1)
    discovery.ResidualScan = _Traced  # type: ignore[misc]
    discovery.discover(eng, cons, noise, 4, seed=0)
    phase[0] = "end"
    time.sleep(0.1)
    print({k: round(v) for k, v in peaks.items()})


if __name__ == "__main__":
    main()

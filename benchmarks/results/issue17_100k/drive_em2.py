"""Issue 17, 100k run: the work of ``bench_parallel.py memory DATA --what em`` (K = 4,
batch 32, one torch thread per rank: reconstruct pass + noise pass + one EM pass) on R
gloo ranks (tomohet.parallel.spawn, as ``bench_parallel.py iteration``). Each rank logs
phase boundaries and, every ~2,000 of its particles, its progress and RSS (VmHWM, VmRSS,
RssAnon, RssFile of /proc/self/status) to PREFIX_rankR.jsonl, so a run stopped early
still gives measured, labelled figures.

    python drive_em2.py DATA.star PREFIX RANKS
"""

import json
import sys
import time

import numpy as np
import torch

from tomohet import parallel
from tomohet.data.keys import half_sets, keyed_order
from tomohet.io import read_particles
from tomohet.methods.em import EMConfig, EMEngine, EMState

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def status_MB() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in FIELDS:
                out[key + "_MB"] = round(int(line.split()[1]) / 1024)
    return out


class Log:
    def __init__(self, path: str) -> None:
        self.t0 = time.perf_counter()
        self.f = open(path, "a", buffering=1)  # noqa: SIM115
        self.phase, self.n, self.last = "", 0, 0

    def mark(self, phase: str, **kw: object) -> None:
        row = {"t_s": round(time.perf_counter() - self.t0, 1),
               "utc": time.strftime("%H:%M:%S", time.gmtime()), "phase": phase, **kw}
        self.f.write(json.dumps({**row, **status_MB()}) + "\n")

    def start(self, phase: str) -> None:
        self.phase, self.n, self.last = phase, 0, 0

    def __call__(self, k: int) -> None:  # EMEngine's progress callback
        self.n += k
        if self.n - self.last >= 2000:
            self.last = self.n
            self.mark(self.phase, done=self.n)


def rank_fn(path: str, prefix: str) -> None:
    torch.set_num_threads(1)
    parallel.init_from_env()
    log = Log(f"{prefix}_rank{parallel.rank()}.jsonl")
    try:
        log.mark("start", world=parallel.world())
        k = 4
        particles = read_particles(path)
        n = particles.n_particles
        log.mark("read", n=n)
        engine = EMEngine(particles, EMConfig(n_classes=k, batch_size=32), np.arange(n),
                          progress=log)
        halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
        labels = np.empty(n, dtype=np.int64)
        order = keyed_order(particles.names, particles.tomo_names, 0, "bench-init")
        labels[order] = np.arange(n) % k
        weights = np.eye(k)[labels]
        log.mark("engine")
        log.start("reconstruct_pass")
        vols, curves, _ = engine.volumes_from(engine.reconstruct_pass(weights, None, halves))
        log.mark("reconstruct_done", done=log.n)
        log.start("noise_pass")
        noise = engine.noise_pass(vols.mean(0, keepdim=True), np.zeros(n, dtype=np.int64))
        log.mark("noise_done", done=log.n)
        state = EMState(volumes=vols, priors=torch.full((k,), 1 / k), sigma2=noise.sigma2,
                        posteriors=weights, fsc=curves)
        log.start("em_pass")
        bp, _, _, _ = engine.em_pass(state, halves)
        log.mark("em_pass_done", done=log.n)
        engine.volumes_from(bp)
        log.mark("maps_done")
    finally:
        parallel.shutdown()


if __name__ == "__main__":
    parallel.spawn(rank_fn, int(sys.argv[3]), (sys.argv[1], sys.argv[2]))

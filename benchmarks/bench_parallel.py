"""Scale-out figures (issue 17): one ml2d EM iteration on 1..R gloo ranks, and peak
memory of one EM pass and one VAE epoch on a set read from disk.

    python benchmarks/bench_parallel.py iteration DATA.star --ranks 1,2 [--k 4]
    python benchmarks/bench_parallel.py memory DATA.star --what em|vae|vae3d|discover

``DATA``: any particle file ``tomohet`` reads, e.g. written by
``tomohet simulate --n 20000 --fast --out big/`` (images stay on disk, memory-mapped).
``iteration``: R ranks spawned on this machine (:func:`tomohet.parallel.spawn`, one
torch thread each), each reading the set; the classes start from keyed random subsets
(reconstruct + noise passes, themselves sharded); the time is one E+M pass and the M-step
maps, between barriers, and the largest posterior difference against the first rank
count is printed. ``memory``: in this process, peak resident size
(:func:`tomohet.bench.memory.measure`) over the pass or epoch, and before it, and the
peak anonymous resident size (``RssAnon``: without the file-backed pages of the
memory-mapped stacks);
``--what discover``: over :func:`tomohet.methods.discovery.discover` (residual pass,
test, partition) after the consensus and noise passes, ``--save FILE.npz`` keeps what it
found (z-map, threshold, labels) to compare two versions.
Prints a JSON line per run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from tomohet import parallel
from tomohet.bench.memory import measure
from tomohet.data.keys import half_sets, keyed_order
from tomohet.methods.em import EMConfig, EMEngine, EMState


def _rss_MB() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _anon_MB() -> float:
    """Anonymous resident memory (``RssAnon``: heap, torch and numpy arrays; not the
    file-backed pages of memory-mapped stacks, which the kernel can drop)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


@contextmanager
def _measured() -> Iterator[dict[str, float]]:
    """:func:`tomohet.bench.memory.measure` plus the peak of :func:`_anon_MB` (sampled
    every 20 ms) as ``anon_before_MB`` / ``anon_peak_MB``."""
    done = threading.Event()
    peak = [_anon_MB()]
    first = peak[0]

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _anon_MB())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        with measure() as stats:
            yield stats
    finally:
        done.set()
        thread.join()
        stats.update(anon_before_MB=first, anon_peak_MB=max(peak[0], _anon_MB()))


def _engine_and_state(path: str, k: int, batch_size: int):
    from tomohet.io import read_particles

    particles = read_particles(path)
    n = particles.n_particles
    engine = EMEngine(particles, EMConfig(n_classes=k, batch_size=batch_size), np.arange(n))
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    labels = np.empty(n, dtype=np.int64)
    labels[keyed_order(particles.names, particles.tomo_names, 0, "bench-init")] = \
        np.arange(n) % k
    weights = np.eye(k)[labels]
    vols, curves, _ = engine.volumes_from(engine.reconstruct_pass(weights, None, halves))
    noise = engine.noise_pass(vols.mean(0, keepdim=True), np.zeros(n, dtype=np.int64))
    state = EMState(volumes=vols, priors=torch.full((k,), 1 / k), sigma2=noise.sigma2,
                    posteriors=weights, fsc=curves)
    return particles, engine, state, halves


def _iteration_rank(path: str, k: int, batch_size: int, out: str) -> None:
    torch.set_num_threads(1)
    parallel.init_from_env()
    try:
        t0 = time.perf_counter()
        particles, engine, state, halves = _engine_and_state(path, k, batch_size)
        t_setup = time.perf_counter() - t0
        parallel.barrier()
        t0 = time.perf_counter()
        bp, _, post, _ = engine.em_pass(state, halves)
        engine.volumes_from(bp)
        parallel.barrier()
        wall = time.perf_counter() - t0
        if parallel.is_main():
            np.save(Path(out) / f"post_{parallel.world()}.npy", post)
            print(json.dumps({"ranks": parallel.world(), "particles": particles.n_particles,
                              "box": particles.optics.box, "classes": k,
                              "iteration_s": round(wall, 2), "setup_s": round(t_setup, 2),
                              "threads_per_rank": 1}), flush=True)
    finally:
        parallel.shutdown()


def iteration(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as out:
        counts = [int(r) for r in args.ranks.split(",")]
        for r in counts:
            if r == 1:
                _iteration_rank(args.data, args.k, args.batch_size, out)
            else:
                parallel.spawn(_iteration_rank, r, (args.data, args.k, args.batch_size, out))
        first = np.load(Path(out) / f"post_{counts[0]}.npy")
        for r in counts[1:]:
            other = np.load(Path(out) / f"post_{r}.npy")
            same = bool((first.argmax(1) == other.argmax(1)).all())
            print(f"ranks {counts[0]} vs {r}: max |posterior difference| "
                  f"{np.abs(first - other).max():.2e}, same assignment: {same}")


def memory(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    before = _rss_MB()
    if args.what == "em":
        particles, engine, state, halves = _engine_and_state(args.data, args.k,
                                                             args.batch_size)
        start = _rss_MB()
        with _measured() as stats:
            engine.em_pass(state, halves)
    elif args.what == "discover":
        particles, start, stats = _discover(args)
    else:
        from tomohet.io import read_particles
        from tomohet.methods.base import HeterogeneityMethod
        from tomohet.methods.vae import TiltVAEMethod

        particles = read_particles(args.data)
        start = _rss_MB()
        if args.what == "vae3d":
            from tomohet.methods.vae3d import Vae3DMethod

            vae: HeterogeneityMethod = Vae3DMethod(n_epochs=1, zdim=8, progress=False,
                                                   random_state=0)
        else:
            vae = TiltVAEMethod(n_epochs=1, zdim=8, n_tilts=10, progress=False, random_state=0)
        with _measured() as stats:
            vae.fit(particles)  # data + consensus + one epoch
    print(json.dumps({"what": args.what, "particles": particles.n_particles,
                      "tilts": int(particles.visible.shape[1]), "box": particles.optics.box,
                      "rss_at_import_MB": round(before), "rss_before_MB": round(start),
                      "rss_peak_MB": round(stats["rss_max_MB"]),
                      "rss_growth_MB": round(stats["rss_growth_MB"]),
                      "rss_peak_in_block_MB": round(start + stats["rss_growth_MB"]),
                      "anon_before_MB": round(stats["anon_before_MB"]),
                      "anon_peak_MB": round(stats["anon_peak_MB"]),
                      "wall_s": round(stats["wall_s"], 1)}), flush=True)


def _discover(args: argparse.Namespace):
    """Consensus, noise, then :func:`~tomohet.methods.discovery.discover` measured."""
    from tomohet.io import read_particles
    from tomohet.methods.discovery import discover

    particles = read_particles(args.data)
    n = particles.n_particles
    engine = EMEngine(particles, EMConfig(n_classes=1, batch_size=args.batch_size),
                      np.arange(n))
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    consensus = engine.volumes_from(engine.reconstruct_pass(np.ones((n, 1)), None,
                                                            halves))[0][0]
    noise = engine.noise_pass(consensus[None], np.zeros(n, dtype=np.int64))
    start = _rss_MB()
    with _measured() as stats:
        found = discover(engine, consensus, noise, args.k, seed=0)
    print(json.dumps(found.summary()), flush=True)
    if args.save:
        np.savez(args.save, z=found.z.numpy(), variance=found.variance.numpy(),
                 labels=found.labels, threshold=found.threshold,
                 p_value=-1.0 if found.p_value is None else found.p_value,
                 region_labels=np.array(found.region_labels).reshape(-1, n))
    return particles, start, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("iteration", "memory"))
    ap.add_argument("data")
    ap.add_argument("--ranks", default="1,2", help="rank counts, comma-separated")
    ap.add_argument("--what", choices=("em", "vae", "vae3d", "discover"), default="em")
    ap.add_argument("--save", help="discover: .npz with what it found")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    iteration(args) if args.mode == "iteration" else memory(args)


if __name__ == "__main__":
    main()

"""Throughput of the core kernels (images/s): projection, back-projection, CTF, likelihood.

Run: ``python benchmarks/bench_core.py [--box 64] [--threads 2] [--device cpu]``.
Figures are noted in the README; nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from tomohet.physics.ctf import CtfParams, ctf_2d, exposure_filter
from tomohet.physics.geometry import random_rotations
from tomohet.physics.projection import Backprojector, VolumeProjector


def timeit(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--n", type=int, default=2048, help="images per timing")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    d, n = args.box, args.n
    g = torch.Generator().manual_seed(0)
    vols = torch.randn(args.classes, d, d, d, generator=g).to(dev)
    rots = random_rotations(n, g).to(dev)
    results = {"box": d, "images": n, "threads": args.threads, "device": str(dev)}

    proj1 = VolumeProjector(vols[:1])
    results["project_1vol_img_per_s"] = n / timeit(lambda: proj1.slices(rots))
    projk = VolumeProjector(vols)
    results[f"project_{args.classes}vol_img_per_s"] = n / timeit(lambda: projk.slices(rots))
    slices = proj1.slices(rots)[0]
    weights = torch.ones(slices.shape, device=dev)

    def backproject():
        bp = Backprojector(d, 1, 2, dev)
        bp.insert(slices, weights, rots)

    results["backproject_img_per_s"] = n / timeit(backproject)
    du = torch.full((n,), 25000.0, device=dev)
    results["ctf_img_per_s"] = n / timeit(
        lambda: ctf_2d(du, du * 0.95, du * 0 + 30, d, 4.0, CtfParams()))
    results["exposure_img_per_s"] = n / timeit(lambda: exposure_filter(du * 0 + 30, d, 4.0))
    t0 = time.perf_counter()
    VolumeProjector(vols)
    results["prepare_projector_s"] = time.perf_counter() - t0
    for k, v in results.items():
        print(f"{k:>28}: {v:,.1f}" if isinstance(v, float) else f"{k:>28}: {v}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

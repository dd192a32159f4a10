"""Time the local-resolution kernel (tomohet.physics.local_resolution) on one pair of half
maps at box 48 and box 96, one torch thread.

Half maps: 300 Gaussian blobs (sigma 1.5 px) inside 0.35 D of the centre, plus white noise
per half (0.5x the signal's standard deviation inside the blobs' region), in the default
soft spherical reference mask (tomohet.methods.base.default_mask). Per box: the default
window (3x the global resolution, >= 12 px) and windows of 16 and 24 px, default step
(W // 4); the median of ``--repeats`` wall times, the number of windows computed, and the
time of ``default_window_px`` (the global FSC that picks the window).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_local_resolution.py \\
        --out benchmarks/results/local_resolution/bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from tomohet.methods.base import default_mask
from tomohet.physics.local_resolution import default_window_px, local_resolution, window_centres


def half_maps(box: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(300, 3))
    centres *= (0.35 * box * rng.random(300) ** (1 / 3) / np.linalg.norm(centres, axis=1))[:, None]
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    sig = np.zeros((box,) * 3)
    for cz, cy, cx in centres:
        sig += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.5**2))
    sd = 0.5 * sig[sig > 0.1 * sig.max()].std()
    return (torch.tensor(sig + sd * rng.standard_normal(sig.shape), dtype=torch.float32),
            torch.tensor(sig + sd * rng.standard_normal(sig.shape), dtype=torch.float32))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", default="48,96")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    px = 12.0
    rows = []
    for box in (int(b) for b in args.boxes.split(",")):
        h1, h2 = half_maps(box)
        mask = default_mask(box)
        t_win, w_default = timed(
            lambda h1=h1, h2=h2, mask=mask: default_window_px(h1, h2, px, mask), args.repeats)
        for w in sorted({int(w_default), 16, 24}):  # type: ignore[call-overload]
            step = w // 4
            nodes = window_centres(box, step)
            near = torch.nn.functional.max_pool3d((mask >= 0.5).float()[None, None],
                                                  2 * step + 1, 1, step)[0, 0] > 0
            n_windows = int(near[nodes][:, nodes][:, :, nodes].sum())
            load = os.getloadavg()[0]
            t, res = timed(lambda w=w, h1=h1, h2=h2, mask=mask: local_resolution(
                h1, h2, px, window_A=w * px, mask=mask), args.repeats)
            inside = res[mask >= 0.5]  # type: ignore[index]
            rows.append({"box": box, "window_px": w, "default_window": w == w_default,
                         "step_px": step, "windows": n_windows, "seconds": round(t, 3),
                         "default_window_px_seconds": round(t_win, 3),
                         "median_local_resolution_A": round(float(inside.median()), 1),
                         "load_average_1min": round(load, 2)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch": torch.__version__, "threads": 1,
              "repeats": args.repeats, "rows": rows}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

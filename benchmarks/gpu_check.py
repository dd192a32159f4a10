"""The GPU path (issue 14): ml2d, ml3d and vae on CUDA vs CPU, on one small simulated set.

Simulates a small preset once, fits each method once on the CPU and once on CUDA with the
same seed, and prints one row per method: wall seconds on each device, ARI between the
two fits' labels, ARI of each against the truth, the correlation of the class maps paired
by the Hungarian assignment of labels (ml2d, ml3d) or the agreement of the two latents
(vae: correlation after the best affine map, after Procrustes, ARI of their k-means
clusters with K = number of states, and each one's k-NN purity against the truth,
``tomohet.metrics.neighbourhood_similarity``), and the peak CUDA memory of the fit
(``torch.cuda.max_memory_allocated``). The table is also written to ``--out`` as
``gpu_check.csv`` and ``gpu_check.json``.

Without CUDA it stops with exit status 2, unless ``--cpu-only``: then the CPU half runs
twice (CPU vs CPU), which must give ARI 1.0 and correlations ~1 -- a self-check of the
comparison code. Nothing else is asserted. Run through ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_compare import (  # noqa: E402
    kmeans_labels,
    linear_map_correlation,
    map_correlations,
    procrustes_correlation,
)

from tomohet.data.subtomo_cache import subtomograms_from_tilts  # noqa: E402
from tomohet.io.atomic import atomic_write_text  # noqa: E402
from tomohet.methods.ml import ML2D, ML3D  # noqa: E402
from tomohet.methods.vae.method import TiltVAEMethod  # noqa: E402
from tomohet.metrics import ari  # noqa: E402
from tomohet.metrics.latent import neighbourhood_similarity, truth_embedding  # noqa: E402
from tomohet.sim import simulate  # noqa: E402
from tomohet.sim.presets import get_preset  # noqa: E402

METHODS = ("ml2d", "ml3d", "vae")


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--n", type=int, default=200, help="particles")
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--tilts", type=int, default=None, help="tilts (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0, help="simulation and fit seed")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--n-iter", type=int, default=6, help="ml2d/ml3d EM iterations")
    ap.add_argument("--epochs", type=int, default=6, help="vae epochs")
    ap.add_argument("--zdim", type=int, default=4, help="vae latent dimension")
    ap.add_argument("--device", default="cuda", help="the second device (default cuda)")
    ap.add_argument("--cpu-only", action="store_true",
                    help="no CUDA: run the CPU half twice (a self-check of the comparison)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default="benchmarks/results/gpu_check")
    a = ap.parse_args(argv)
    unknown = set(a.methods.split(",")) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; known: {', '.join(METHODS)}")
    return a


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fit: Any, device: str) -> tuple[Any, float, float | None]:
    """-> (fitted method, wall seconds, peak CUDA MB or None)."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    m = fit()
    _sync(device)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return m, wall, peak


def _fit_ml(name: str, data: Any, k: int, a: argparse.Namespace, device: str
            ) -> tuple[dict[str, Any], float, float | None]:
    cls = ML2D if name == "ml2d" else ML3D

    def fit() -> Any:
        return cls(n_classes=k, n_iter=a.n_iter, min_iter=min(5, a.n_iter), n_restarts=1,
                   device=device, progress=False, random_state=a.seed).fit(data)

    m, wall, peak = _timed(fit, device)
    vols = m.class_volumes_
    vols = vols.detach().cpu().numpy() if hasattr(vols, "detach") else np.asarray(vols)
    return {"labels": np.asarray(m.labels_), "maps": vols}, wall, peak


def _fit_vae(data: Any, a: argparse.Namespace, device: str
             ) -> tuple[dict[str, Any], float, float | None]:
    def fit() -> Any:
        return TiltVAEMethod(zdim=a.zdim, n_epochs=a.epochs, device=device, progress=False,
                             random_state=a.seed).fit(data)

    m, wall, peak = _timed(fit, device)
    return {"latent": np.asarray(m.transform(), dtype=np.float64)}, wall, peak


def compare(name: str, fa: dict[str, Any], fb: dict[str, Any], truth: np.ndarray,
            k: int, seed: int) -> dict[str, Any]:
    """The agreement columns of one method's row (fits A and B, truth states)."""
    if name == "vae":
        za, zb = fa["latent"], fb["latent"]
        keep = np.isfinite(za).all(1) & np.isfinite(zb).all(1)
        za, zb, t = za[keep], zb[keep], truth[keep]
        la, lb = kmeans_labels(za, k, seed), kmeans_labels(zb, k, seed)
        tz = truth_embedding(states=t)
        nn = min(20, len(t) - 1)
        return {"ari_a_b": ari(la, lb), "ari_truth_a": ari(t, la), "ari_truth_b": ari(t, lb),
                "latent_linear_corr": linear_map_correlation(za, zb),
                "latent_procrustes_corr": procrustes_correlation(za, zb),
                "neigh_truth_a": neighbourhood_similarity(za, tz, nn),
                "neigh_truth_b": neighbourhood_similarity(zb, tz, nn),
                "particles_compared": int(keep.sum())}
    pairs = map_correlations(fa["maps"], fb["maps"], fa["labels"], fb["labels"])
    corr = [float(p["corr"]) for p in pairs]
    return {"ari_a_b": ari(fa["labels"], fb["labels"]),
            "ari_truth_a": ari(truth, fa["labels"]), "ari_truth_b": ari(truth, fb["labels"]),
            "map_corr_min": min(corr) if corr else float("nan"),
            "map_corr_mean": float(np.mean(corr)) if corr else float("nan"),
            "classes_matched": len(pairs), "particles_compared": len(truth)}


def _print_table(rows: list[dict[str, Any]], dev_b: str) -> None:
    cols = [("method", "method"), ("wall_a_s", "cpu s"), ("wall_b_s", f"{dev_b} s"),
            ("ari_a_b", f"ARI cpu~{dev_b}"), ("ari_truth_a", "ARI truth cpu"),
            ("ari_truth_b", f"ARI truth {dev_b}"), ("map_corr_min", "map corr min"),
            ("map_corr_mean", "map corr mean"), ("latent_linear_corr", "latent lin corr"),
            ("latent_procrustes_corr", "latent procr corr"),
            ("neigh_truth_a", "kNN truth cpu"), ("neigh_truth_b", f"kNN truth {dev_b}"),
            ("peak_cuda_MB", "peak CUDA MB")]

    def cell(c: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}" if c.startswith(("wall", "peak")) else f"{v:.4f}"
        return str(v)

    print(" | ".join(h for _, h in cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(cell(c, r.get(c)) for c, _ in cols))


def run(a: argparse.Namespace) -> list[dict[str, Any]]:
    dev_b = "cpu" if a.cpu_only else a.device
    torch.set_num_threads(a.threads)
    over: dict[str, Any] = {"n_particles": a.n, "box": a.box}
    if a.tilts:
        over["n_tilts"] = a.tilts
    t0 = time.perf_counter()
    ds = simulate(get_preset(a.preset, **over), seed=a.seed)
    truth = np.unique(ds.truth["state"].to_numpy(), return_inverse=True)[1].reshape(-1)
    k = int(truth.max()) + 1
    print(f"simulated {a.preset}: {a.n} particles, box {a.box}, K = {k} states, "
          f"{time.perf_counter() - t0:.1f} s; second device: {dev_b}"
          f"{' (CPU self-check)' if a.cpu_only else ''}", flush=True)
    if dev_b.startswith("cuda"):
        torch.zeros(1, device=dev_b)  # CUDA context outside the timed fits
        _sync(dev_b)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tomohet_gpu_check_") as tmp:
        for name in a.methods.split(","):
            if name == "ml3d":  # subtomograms built once, both fits read the same ones
                data: Any = subtomograms_from_tilts(ds.particles, tmp, progress=False)
            else:
                data = ds.particles
            fits, walls, peaks = [], [], []
            for dev in ("cpu", dev_b):
                if name == "vae":
                    f, w, p = _fit_vae(data, a, dev)
                else:
                    f, w, p = _fit_ml(name, data, k, a, dev)
                fits.append(f)
                walls.append(w)
                peaks.append(p)
            row = {"method": name, "device_a": "cpu", "device_b": dev_b,
                   "wall_a_s": round(walls[0], 2), "wall_b_s": round(walls[1], 2),
                   **compare(name, fits[0], fits[1], truth, k, a.seed),
                   "peak_cuda_MB": None if peaks[1] is None else round(peaks[1], 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    if not a.cpu_only and a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}). Install the CUDA build "
              "of torch on a GPU machine, or pass --cpu-only for the CPU-vs-CPU self-check.",
              file=sys.stderr)
        return 2
    rows = run(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"preset": a.preset, "n_particles": a.n, "box": a.box, "tilts": a.tilts,
            "seed": a.seed, "n_iter": a.n_iter, "epochs": a.epochs, "zdim": a.zdim,
            "threads": a.threads, "cpu_only": a.cpu_only, "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    table = pd.DataFrame(rows)
    if "classes_matched" in table:  # NaN on the vae row: keep the counts integers
        table["classes_matched"] = table["classes_matched"].astype("Int64")
    atomic_write_text(out / "gpu_check.csv", table.to_csv(index=False))
    atomic_write_text(out / "gpu_check.json",
                      json.dumps({"config": meta, "rows": rows}, indent=2) + "\n")
    _print_table(rows, "cpu2" if a.cpu_only else a.device)
    print(f"written: {out / 'gpu_check.csv'}, {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tomohet analyze``: latent analysis of a ``tomohet train`` run folder.

Writes into ``DIR/analysis`` (or ``--out``): ``latent_pca.csv`` / ``latent_umap.csv``,
``assignments.csv`` (k-means) and ``assignments_gmm.csv``, ``latent.csv`` (copy keyed by
particle), MRC maps at the k-means and GMM centres (nearest particle on the data),
along each principal component and along ``--path`` between two particles, maps of
``--particles`` on request, and ``index.html``: a self-contained figure page with the
embeddings, clusters, trajectories' central sections and convergence diagnostics.
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.cli.common import HelpFormatter, pick_device, prepare_out_dir, stamp_config

EXAMPLE = """examples:
  tomohet analyze vae_run/
  tomohet analyze vae_run/ --k 6 --pcs 3 --n-points 8 --out vae_run/analysis_k6
  tomohet analyze vae_run/ --path sim_TS_01/3 sim_TS_02/17 --particles sim_TS_01/5
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("analyze", help="latent analysis of a trained VAE",
                       description="PCA/UMAP, clusters, volumes along trajectories and a "
                                   "figure page for a `tomohet train` run folder.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("run", help="run folder written by `tomohet train`")
    p.add_argument("--out", default=None, help="output folder (default RUN/analysis)")
    p.add_argument("--k", type=int, default=4, help="clusters for k-means and GMM")
    p.add_argument("--pcs", type=int, default=2, help="principal components to traverse")
    p.add_argument("--n-points", type=int, default=10, help="maps per trajectory")
    p.add_argument("--path", nargs=2, metavar=("START", "END"), default=None,
                   help="two particles (names or 0-based rows) to join by a latent path")
    p.add_argument("--particles", nargs="*", default=None,
                   help="particles (names or rows) whose own maps to write")
    p.add_argument("--no-umap", action="store_true", help="skip UMAP (PCA only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (k-means, GMM, UMAP)")
    return p


def percent(fraction: float) -> str:
    """A fraction of variance as a percentage that never rounds a real share to 0% or
    100%: ``0.9996`` -> ``"99.96%"``, ``0.0031`` -> ``"0.31%"``, ``0.25`` -> ``"25%"``."""
    pct = 100.0 * float(fraction)
    if not np.isfinite(pct):
        return "n/a"
    if 0.0 < pct < 1.0:  # two significant digits
        return f"{pct:.{1 - int(np.floor(np.log10(pct)))}f}%"
    if 99.0 < pct < 100.0:  # as many decimals as keep it below 100
        return f"{pct:.{max(1, int(np.ceil(-np.log10(100.0 - pct))))}f}%"
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def explained_line(explained: np.ndarray) -> str:
    """``explained variance per PC: PC1 71%, PC2 24%, ...`` over every component."""
    parts = [f"PC{i + 1} {percent(f)}" for i, f in enumerate(np.asarray(explained))]
    return "explained variance per PC: " + ", ".join(parts)


def _row(table: pd.DataFrame, key: str) -> int:
    names = table["particle"].astype(str)
    hit = np.nonzero((names == key).to_numpy())[0]
    if len(hit):
        return int(hit[0])
    if key.isdigit() and int(key) < len(table):
        return int(key)
    raise SystemExit(f"tomohet analyze: particle {key!r} not in latent.csv")


def _volumes(model, z: np.ndarray, out: Path, prefix: str, px: float,
             titles: list[str]) -> dict[str, Any]:
    from tomohet.analysis.page import slices_figure
    from tomohet.analysis.volumes import central_slices, write_volumes

    paths, vols = write_volumes(model, z, out, prefix, px)
    return {"paths": paths, "figure": slices_figure(central_slices(vols), titles)}


def _analyse(args: argparse.Namespace, run: Path, out: Path) -> list[tuple[str, str]]:
    from tomohet.analysis import latent as L
    from tomohet.analysis.page import img, scatter_figure, table_html
    from tomohet.analysis.volumes import load_run
    from tomohet.io import write_assignments_csv, write_latent_csv

    model, info, table = load_run(run, pick_device(args.device))
    px = float(info.get("extra", {}).get("pixel_size_A", 1.0))
    names = table["particle"].astype(str).tolist()
    z = table[[c for c in table.columns if c.startswith("z")]].to_numpy(float)
    ok = L.finite_rows(z)
    sections: list[tuple[str, str]] = []
    p = L.pca(z, max(2, args.pcs))
    write_latent_csv(out / "latent.csv", names, z)
    write_latent_csv(out / "latent_pca.csv", names, p.coords)
    emb, kind = (p.coords[:, :2], "pca") if args.no_umap else L.umap_embedding(z, args.seed)
    if kind in ("umap", "pca"):
        write_latent_csv(out / f"latent_{kind}.csv", names, emb)
    km = L.kmeans_clusters(z, args.k, args.seed)
    gm = L.gmm_clusters(z, args.k, args.seed)
    write_assignments_csv(out / "assignments.csv", names, labels=km.labels)
    write_assignments_csv(out / "assignments_gmm.csv", names, labels=gm.labels)
    every = L.pca(z, z.shape[1])  # all components: the explained variance of each
    print(explained_line(every.explained))
    pc_axes = (f"PC1 ({percent(every.explained[0])})", f"PC2 ({percent(every.explained[1])})"
               if len(every.explained) > 1 else "PC2 (none)")
    figs = [scatter_figure(p.coords, km.labels, "PCA, k-means clusters", pc_axes),
            scatter_figure(emb, km.labels, f"{kind.upper()}, k-means clusters"),
            scatter_figure(p.coords, gm.labels, "PCA, GMM clusters", pc_axes)]
    skipped = int((~ok).sum())
    note = (f"<p>{int(ok.sum())} particles with a latent"
            + (f"; {skipped} skipped (NaN latent, label -1)" if skipped else "") + "</p>")
    note += f"<p>{html.escape(explained_line(every.explained))}</p>"
    sections.append(("Latent space", note + "".join(img(f) for f in figs)))
    for cl in (km, gm):
        sizes = np.bincount(cl.labels[cl.labels >= 0], minlength=len(cl.centres))
        v = _volumes(model, z[cl.on_data], out / cl.method, f"{cl.method}_centre", px,
                     [f"{cl.method} {i + 1}: {sizes[i]} particles ({names[j]})"
                      for i, j in enumerate(cl.on_data)])
        sections.append((f"{cl.method} centres (maps: {cl.method}/)", img(v["figure"])))
    for pc in range(min(args.pcs, p.components.shape[0])):
        traj = L.pc_trajectory(p, pc, args.n_points)
        v = _volumes(model, traj, out / f"pc{pc + 1}", f"pc{pc + 1}", px,
                     [f"PC{pc + 1} point {i + 1}" for i in range(len(traj))])
        tc = (traj - p.mean) @ p.components.T
        sections.append((f"PC{pc + 1} trajectory (maps: pc{pc + 1}/)",
                         img(scatter_figure(p.coords, None, f"PC{pc + 1} path", pc_axes,
                                            tc[:, :2])) + img(v["figure"])))
    if args.path:
        a, b = _row(table, args.path[0]), _row(table, args.path[1])
        zz = L.latent_path(z, a, b, args.n_points)
        v = _volumes(model, zz, out / "path", "path", px,
                     [f"path {i + 1}/{len(zz)}" for i in range(len(zz))])
        sections.append((f"Path {names[a]} -> {names[b]} (maps: path/)", img(v["figure"])))
    if args.particles:
        rows = [_row(table, k) for k in args.particles]
        bad = [names[r] for r in rows if not ok[r]]
        if bad:
            raise SystemExit(f"tomohet analyze: no latent for skipped particle(s) {bad}")
        v = _volumes(model, z[rows], out / "particles", "particle", px,
                     [names[r] for r in rows])
        sections.append(("Requested particles (maps: particles/)", img(v["figure"])))
    sections.append(_convergence(run, info, table_html))
    return sections


def _convergence(run: Path, info: dict, table_html) -> tuple[str, str]:
    from tomohet.analysis.page import img, png_data_uri

    history = info.get("history") or []
    body = ""
    png = run / "convergence.png"
    if png.exists():
        body += img(png_data_uri(png.read_bytes()), "convergence")
    summary = run / "summary.json"
    if summary.exists():
        import json

        for w in json.loads(summary.read_text()).get("warnings", []):
            body += f"<p class='warn'>{html.escape(w)}</p>"
    keys = ("epoch", "loss", "nll", "kl", "drift", "active_dims", "seconds")
    body += table_html([{k: h.get(k) for k in keys} for h in history])
    return "Convergence", body


def run(args: argparse.Namespace) -> int:
    from tomohet.analysis.page import write_page

    t0 = time.perf_counter()
    run_dir = Path(args.run)
    out = prepare_out_dir(args.out or run_dir / "analysis")
    stamp_config(out, "analyze", vars(args))
    sections = _analyse(args, run_dir, out)
    page = write_page(out / "index.html", f"tomohet analyze: {run_dir.name}", sections)
    print(f"analyze: {run_dir} in {time.perf_counter() - t0:.1f}s -> {page}")
    return 0

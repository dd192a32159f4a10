"""``tomohet embed``: continuous heterogeneity by linear decomposition.

Methods: wmdpca, ccmatrix, multiscale (subtomograms, or built on the fly from 2D
stacks) and ppca2d (2D tilt images). Writes latent.csv, eigenvolumes, volume series along
each component, the explained-variance plot, assignments.csv when clustered, config.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tomohet import parallel
from tomohet.cli.common import (
    HelpFormatter,
    add_datadir_arg,
    pick_device,
    prepare_out_dir,
    stamp_config,
)

EXAMPLE = """examples:
  tomohet embed wmdpca run_optimisation_set.star --out wmd/
  tomohet embed wmdpca subtomos.star --components 6 --lowpass 20 --mask roi.mrc --out wmd/
  tomohet embed wmdpca run_optimisation_set.star --mask sphere --out wmd_sphere/
  tomohet embed ccmatrix subtomos.star --lowpass 25 --cluster ward --k 3 --out cc/
  tomohet embed multiscale run_optimisation_set.star --scales 8,14,21 --out ms/
  tomohet embed ppca2d run_optimisation_set.star --components 2 --iter 10 --out ppca/
  tomohet embed ppca2d run_optimisation_set.star --focus-mask none --out ppca_all/
  tomohet embed nma run_optimisation_set.star --model atoms.pdb --modes 6 --out nma/
  tomohet embed flow run_optimisation_set.star --levels 2,3,5 --out flow/
"""

METHODS = {
    "wmdpca": "wedge-masked-difference PCA of subtomograms (PEET/Dynamo/i3 style)",
    "ccmatrix": "constrained cross-correlation matrix, eigen-decomposed (Dynamo style)",
    "multiscale": "difference SVD at several length scales, concatenated (emClarity style)",
    "ppca2d": "mean + eigenvolumes fitted by EM on the 2D tilt images (probabilistic PCA)",
    "nma": "normal-mode amplitudes fitted through each wedge (HEMNMA-3D / MDTOMO style)",
    "flow": "dense displacement fields against the same-wedge average (TomoFlow style)",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="particle set (any supported format)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
    p.add_argument("--components", type=int, default=None,
                   help="number of components (multiscale: per scale); None: the method's")
    p.add_argument("--cluster", choices=["gmm", "kmeans", "ward", "none"], default="gmm",
                   help="clustering of the coordinates into classes")
    p.add_argument("--k", type=int, default=None,
                   help="number of classes; None: suggested by the mixture BIC")
    p.add_argument("--max-k", type=int, default=8, help="largest K the BIC tries")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--batch-size", type=int, default=32, help="particles per batch")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_difference(p: argparse.ArgumentParser, lowpass: bool = True) -> None:
    if lowpass:
        p.add_argument("--lowpass", type=float, default=None,
                       help="low-pass (A); None: 5 pixels")
    p.add_argument("--highpass", type=float, default=None, help="high-pass (A)")
    p.add_argument("--mask", default="auto",
                   help="where the differences are taken: 'auto' (the region where "
                   "discovery finds local variation above noise, e.g. a small component; "
                   "the soft sphere when the variation is not local), 'sphere' (the soft "
                   "sphere, the behaviour before 'auto' was the default) or a "
                   "region-of-interest mask (mrc)")
    p.add_argument("--mask-radius", type=float, default=None,
                   help="soft spherical mask radius (A) when the sphere is used")
    p.add_argument("--normalise", choices=["none", "scale", "std"], default="none",
                   help="per-particle normalisation")
    p.add_argument("--max-memory", type=float, default=2.0,
                   help="GB of features held in memory; beyond, they stream from disk")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("embed", help="continuous heterogeneity by linear decomposition",
                       description="Linear latent embeddings, eigenvolumes and clusters.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, desc in METHODS.items():
        m = methods.add_parser(name, help=desc, description=desc, epilog=EXAMPLE,
                               formatter_class=HelpFormatter)
        _add_common(m)
        if name in ("wmdpca", "multiscale"):
            _add_difference(m, lowpass=name == "wmdpca")
        if name == "multiscale":
            m.add_argument("--scales", default=None,
                           help="length scales in A, comma separated (default 8,14,21)")
        if name == "ccmatrix":
            m.add_argument("--lowpass", type=float, default=None,
                           help="low-pass (A); None: 5 pixels")
            m.add_argument("--highpass", type=float, default=None, help="high-pass (A)")
            m.add_argument("--max-memory", type=float, default=4.0,
                           help="GB the N x N matrices may take; larger sets are refused")
        if name == "nma":
            m.add_argument("--model", default=None,
                           help="atomic model (PDB/mmCIF; several models: an ensemble whose "
                           "principal components are the basis); None: pseudo-atoms")
            m.add_argument("--modes", type=int, default=6, help="number of modes")
            m.add_argument("--map-frame", action="store_true",
                           help="model coordinates are in the map frame (origin at the box "
                           "corner); default: centre of mass at the box centre")
            m.add_argument("--lowpass", type=float, default=None,
                           help="finest detail fitted (A); None: 5 pixels")
            m.add_argument("--prior-sd", type=float, default=5.0,
                           help="prior SD of each mode amplitude (A RMS)")
        if name == "flow":
            m.add_argument("--lowpass", type=float, default=None,
                           help="finest detail matched (A); None: 4 pixels")
            m.add_argument("--levels", default="2,3,5",
                           help="control grids, coarse to fine (points per axis)")
            m.add_argument("--iter", type=int, default=30, help="optimiser steps per level")
            m.add_argument("--smoothness", type=float, default=0.01,
                           help="weight of the field's squared gradient")
        if name == "ppca2d":
            m.add_argument("--iter", type=int, default=10, help="EM iterations")
            m.add_argument("--max-resolution", type=float, default=None,
                           help="highest resolution (A) used")
            m.add_argument("--ridge", type=float, default=0.01,
                           help="regularisation of the volumes (relative, per shell)")
            m.add_argument("--focus-mask", default="auto",
                           help="where the eigenvolumes may vary: 'auto' (the region where "
                           "discovery finds local variation above noise; anywhere when the "
                           "variation is not local), 'none' (anywhere, the behaviour before "
                           "'auto' was the default) or a mask (mrc)")
    return p


def method_params(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments of the chosen method from the parsed command line."""
    params: dict[str, Any] = {
        "cluster": None if args.cluster == "none" else args.cluster, "n_clusters": args.k,
        "max_clusters": args.max_k, "batch_size": args.batch_size,
    }
    if args.method == "multiscale":
        if args.components:
            params["components_per_scale"] = args.components
        if args.scales:
            params["scales_A"] = [float(s) for s in args.scales.split(",") if s.strip()]
    elif args.components:
        params["n_components"] = args.components
    if args.method in ("wmdpca", "multiscale"):
        params.update(highpass_A=args.highpass, mask=args.mask, mask_radius_A=args.mask_radius,
                      normalise=args.normalise, max_memory_GB=args.max_memory)
        if args.method == "wmdpca":
            params["lowpass_A"] = args.lowpass
    elif args.method == "nma":
        params.update(model=args.model, n_modes=args.modes, centre_model=not args.map_frame,
                      lowpass_A=args.lowpass, prior_sd_A=args.prior_sd)
    elif args.method == "flow":
        params.update(lowpass_A=args.lowpass, n_iter=args.iter, smoothness=args.smoothness,
                      levels=tuple(int(g) for g in args.levels.split(",") if g.strip()))
    elif args.method == "ccmatrix":
        params.update(lowpass_A=args.lowpass, highpass_A=args.highpass,
                      max_memory_GB=args.max_memory)
    else:
        params.update(n_iter=args.iter, max_resolution_A=args.max_resolution, ridge=args.ridge,
                      focus_mask=args.focus_mask)
    return params


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles
    from tomohet.methods import get_method

    out = prepare_out_dir(args.out)
    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    device = pick_device(args.device)
    method = get_method(args.method, **method_params(args), device=str(device),
                        progress=not args.no_progress, random_state=args.seed)
    stamp_config(out, f"embed {args.method}", vars(args))
    t0 = time.perf_counter()
    try:
        method.fit(particles)
    except MemoryError as exc:
        print(f"tomohet embed: {exc}")
        return 3
    if parallel.is_main():  # one rank writes the outputs
        method.save(out, particles)
    ratio = getattr(method, "explained_variance_ratio_", None)
    latent = method.transform()
    msg = (f"{args.method}: {particles.n_particles} particles in "
           f"{time.perf_counter() - t0:.1f}s; {latent.shape[1]} coordinates")
    if ratio is not None:
        msg += "; explained " + ", ".join(f"{r:.3f}" for r in ratio[:6])
    info = getattr(method, "cluster_info_", None)
    if getattr(method, "labels_", None) is not None and info:
        msg += f"; {info['n_clusters']} classes {info['sizes']}"
    print(msg + f" -> {out}")
    return 0

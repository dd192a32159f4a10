"""``tomohet classify``: discrete classification (ml2d, ml3d, occupancy, shc)."""

from __future__ import annotations

import argparse
import sys
import time

from tomohet import parallel
from tomohet.cli.common import (
    HelpFormatter,
    add_datadir_arg,
    pick_device,
    prepare_out_dir,
    stamp_config,
)

EXAMPLE = """examples:
  tomohet classify ml2d run_optimisation_set.star --k 4 --out ml2d/
  tomohet classify ml2d run_optimisation_set.star --k 3 --focus-mask focus.mrc --out focused/
  tomohet classify ml3d subtomos.star --k 4 --max-resolution 30 --out ml3d/
  tomohet classify ml2d ml2d/ --classes 3 --k 3 --focus-mask auto --out ml2d_c3/
  tomohet classify occupancy run_optimisation_set.star --k 2 --out occ/
"""

ML_METHODS = {
    "ml2d": "maximum likelihood on 2D tilt images (RELION 5 style)",
    "ml3d": "maximum likelihood on subtomograms with 3D CTF/wedge weights (RELION 3.1-4)",
    "occupancy": "per-tilt likelihoods with tilt weights -> occupancies (nextPYP style)",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="particle set (any supported format), or an earlier run "
                   "folder to re-classify the particles of its --classes (hierarchical)")
    p.add_argument("--classes", default=None,
                   help="with a run folder as DATA: its classes (1-based, comma separated) "
                   "whose particles are re-classified, starting from their map")
    p.add_argument("--k", type=int, required=True, help="number of classes")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--batch-size", type=int, default=32, help="particles per batch")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_ml(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iter", type=int, default=25, help="maximum EM iterations")
    p.add_argument("--max-resolution", type=float, default=None,
                   help="highest resolution (A) used for classification")
    p.add_argument("--tau-fudge", type=float, default=1.0, help="regularisation T")
    p.add_argument("--reference", default=None, help="initial reference map (mrc)")
    p.add_argument("--init-lowpass", type=float, default=None,
                   help="low-pass (A) of the initial references (default 6 pixels)")
    p.add_argument("--restarts", type=int, default=1, help="restarts; the best is kept")
    p.add_argument("--anneal-iters", type=int, default=6,
                   help="iterations of deterministic annealing of the posteriors (0: off)")
    p.add_argument("--anneal-strength", type=float, default=0.7,
                   help="annealing strength in [0, 1]: at its start each particle's largest "
                   "posterior is capped at 1/K + (1 - strength)(1 - 1/K) (0: off)")
    p.add_argument("--mask-radius", type=float, default=None,
                   help="soft spherical reference mask radius (A)")
    p.add_argument("--focus-mask", default="auto",
                   help="region to classify on: 'auto' (where the residuals against the "
                   "consensus vary above noise; whole map when none or large), 'none', or "
                   "a mask (mrc)")
    p.add_argument("--split", default="regions", choices=("regions", "joint"),
                   help="with --focus-mask auto: 'regions' classifies each separate region "
                   "found in two (present / absent) and combines them (2^R classes; the "
                   "others stay empty), 'joint' runs K-class EM over the whole focus mask")
    p.add_argument("--init", default="components", choices=("components", "random"),
                   help="first classes: k-means on the residual maps' leading components "
                   "(random annealed subsets when discovery finds nothing), or random")
    p.add_argument("--max-dose", type=float, default=None,
                   help="ignore tilt images with more cumulative dose (e/A^2)")
    p.add_argument("--min-tilts", type=int, default=None,
                   help="skip particles with fewer visible tilts")
    p.add_argument("--local-search", type=float, default=0.0,
                   help="local rotation search around the pose prior (degrees)")
    p.add_argument("--tol", type=float, default=0.002,
                   help="stop when fewer particles than this change class")
    p.add_argument("--cache-geometry", type=float, default=0.0, metavar="MB",
                   help="keep up to MB of prepared pixels and interpolation plans across "
                        "iterations (fixed poses; same results, faster); 0 = off")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("classify", help="discrete classification",
                       description="Discrete classification of particles into K classes.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, desc in ML_METHODS.items():
        m = methods.add_parser(name, help=desc, description=desc, epilog=EXAMPLE,
                               formatter_class=HelpFormatter)
        _add_common(m)
        _add_ml(m)
    from tomohet.cli import classify_shc

    m = classify_shc.add_parser(methods)
    _add_common(m)
    return p


def focus_arg(value: str | None) -> str | None:
    """--focus-mask: 'auto', 'none' (-> None) or a file path."""
    return None if value is None or value.lower() == "none" else value


def _ml_params(args: argparse.Namespace, out: str) -> dict:
    return {
        "n_classes": args.k, "n_iter": args.iter, "max_resolution_A": args.max_resolution,
        "tau_fudge": args.tau_fudge, "reference": args.reference,
        "init": "reference" if args.reference else args.init,
        "init_lowpass_A": args.init_lowpass, "n_restarts": args.restarts,
        "anneal_iters": args.anneal_iters, "anneal_strength": args.anneal_strength,
        "mask_radius_A": args.mask_radius, "focus_mask": focus_arg(args.focus_mask),
        "split": args.split, "max_dose_e_per_A2": args.max_dose, "min_tilts": args.min_tilts,
        "local_search_deg": args.local_search, "tol": args.tol,
        "batch_size": args.batch_size, "checkpoint_dir": out,
    }


def _input(args: argparse.Namespace, read_particles):
    """(particles, starting map or None, config.json links): a particle file, or the
    particles of ``--classes`` of an earlier run folder (hierarchical classification)."""
    from pathlib import Path

    from tomohet.analysis.runs import class_subset, input_record, parse_classes
    from tomohet.data.sources import DataError

    if Path(args.data).is_dir():
        sub = class_subset(args.data, parse_classes(args.classes))
        print(f"re-classifying {sub.particles.n_particles} particles of class(es) "
              f"{sub.parent['classes']} of {sub.parent['run']}")
        return sub.particles, sub.reference, {"input": sub.input, "parent": sub.parent}
    if args.classes is not None:
        raise DataError(f"--classes {args.classes}: needs a run folder as DATA, "
                        f"got the file {args.data}")
    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    rec = input_record(args.data, args.tomograms, args.datadir, particles.meta.get("format"))
    return particles, None, {"input": rec}


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles
    from tomohet.methods import get_method
    from tomohet.methods.outputs import MapWriteError

    out = prepare_out_dir(args.out)
    particles, reference, links = _input(args, read_particles)
    device = pick_device(args.device)
    if args.method in ML_METHODS:
        params = _ml_params(args, str(out))
        if args.reference is None and reference is not None:
            params["reference"] = reference  # the parent class's map; init unchanged
    else:
        from tomohet.cli import classify_shc

        params = classify_shc.params(args)
    method = get_method(args.method, **params, device=str(device),
                        progress=not args.no_progress, random_state=args.seed)
    if getattr(args, "cache_geometry", 0.0) > 0:  # EMConfig.cache_geometry_mb (ml methods)
        setattr(method, "cache_geometry_mb", args.cache_geometry)  # noqa: B010
    stamp_config(out, f"classify {args.method}", vars(args), extra=links)
    t0 = time.perf_counter()
    method.fit(particles)
    try:
        if parallel.is_main():  # one rank writes the outputs
            method.save(out, particles)
    except MapWriteError as exc:
        print(f"tomohet classify {args.method}: error: {exc} (in {out})", file=sys.stderr)
        return 1
    labels = method.predict()
    counts = {k + 1: int((labels == k).sum()) for k in range(args.k)}
    skipped = int((labels < 0).sum())
    print(f"{args.method}: {particles.n_particles} particles in {time.perf_counter() - t0:.1f}s"
          f"; class sizes {counts}" + (f"; {skipped} filtered out" if skipped else "")
          + f" -> {out}")
    summary = getattr(method, "summary_", None)
    if summary:
        print(summary["statement"])
    return 0

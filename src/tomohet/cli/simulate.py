"""``tomohet simulate``: a simulated data set with ground truth from a preset."""

from __future__ import annotations

import argparse
import json
import time

from tomohet.cli.common import HelpFormatter, prepare_out_dir

EXAMPLE = """example:
  tomohet simulate --preset demo --out sim_demo
  tomohet simulate --preset discrete-realistic --out sim_discrete --seed 3
  tomohet simulate --preset mixed --n-particles 500 --snr 0.05 --formats relion5,warp \\
      --out sim_mixed
  tomohet simulate --list

presets: demo, discrete, continuous, mixed; each also as NAME-easy (SNR 0.1 at 0 deg,
the default) and NAME-realistic (SNR 0.02). Outputs: particle files (first format in
--out, others in --out/FORMAT/), truth.csv, state_XX.mrc, simulation.json.
"""

FORMATS_DEFAULT = "relion5,warp"


# particles per tomogram with --fast (a 4000 x 4000 x 1200 A tomogram holds ~700 ribosome-
# sized particles at their minimum distance; 400 leaves room)
FAST_PER_TOMOGRAM = 400


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "simulate", help="simulate tilt-series particles with known heterogeneity",
        description="Simulate 2D tilt-series particles (dose-symmetric tilt series, CTF "
        "with defocus gradient, exposure filter, white noise at a set SNR) of particles "
        "with discrete and/or continuous heterogeneity placed in tomograms, and write "
        "them with their ground truth.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("--preset", default="demo", help="preset name (see --list)")
    p.add_argument("--out", help="output folder (required unless --list)")
    p.add_argument("--n-particles", "--n", type=int, default=None,
                   help="override particle count")
    p.add_argument("--fast", action="store_true",
                   help="large sets: box 32 unless --box, RELION 5 only unless --formats, "
                   "images rendered in batches into a memory-mapped file (never all in "
                   "memory), e.g. tomohet simulate --n 100000 --fast --out big/")
    p.add_argument("--box", type=int, default=None,
                   help="override box size (pixel size rescaled to keep the field of view)")
    p.add_argument("--snr", type=float, default=None, help="override SNR at 0 degrees")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: the preset's or config's, 0)")
    p.add_argument("--formats", default=FORMATS_DEFAULT,
                   help="comma-separated particle formats to write ('' for none)")
    p.add_argument("--subtomograms", nargs="?", const="pseudo", default=None,
                   choices=("pseudo", "reconstructed"),
                   help="also write subtomograms and 3D CTF volumes: RELION 4 "
                        "pseudo-subtomograms (the default) or RELION 3.0/3.1-style "
                        "reconstructions with a 3D CTF ('reconstructed')")
    p.add_argument("--config", default=None,
                   help="JSON file with a full SimulationConfig (replaces --preset)")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from tomohet.sim import SimulationConfig, get_preset, list_presets, simulate

    if args.list:
        for name in list_presets():
            cfg = get_preset(name)
            print(f"{name:22s} {cfg.n_particles:5d} particles, box {cfg.box} at "
                  f"{cfg.pixel_size_A:g} A/px, {len(cfg.tilt.angles_deg())} tilts, "
                  f"SNR {cfg.snr:g}")
        return 0
    if not args.out:
        raise SystemExit("tomohet simulate: error: --out is required")
    box = 32 if args.fast and args.box is None else args.box
    overrides = {k: v for k, v in (("n_particles", args.n_particles), ("box", box),
                                   ("snr", args.snr)) if v is not None}
    if args.config:
        with open(args.config) as fh:
            data = json.load(fh)
        config = SimulationConfig.from_dict(data.get("config", data)).replace(**overrides)
    else:
        config = get_preset(args.preset, **overrides)
    if args.fast and config.n_tomograms * FAST_PER_TOMOGRAM < config.n_particles:
        # a preset's few tomograms cannot hold 10^4-10^5 particles apart: add tomograms
        n_tomo = -(-config.n_particles // FAST_PER_TOMOGRAM)
        print(f"--fast: {n_tomo} tomograms of at most {FAST_PER_TOMOGRAM} particles "
              f"(the preset has {config.n_tomograms})")
        config = config.replace(n_tomograms=n_tomo)
    out = prepare_out_dir(args.out)
    t0 = time.perf_counter()
    stack_file = out / ".images_tmp.npy" if args.fast else None
    ds = simulate(config, seed=args.seed, progress=not args.no_progress,
                  stack_file=stack_file)
    if args.fast and args.formats == FORMATS_DEFAULT:
        args.formats = "relion5"
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    try:
        written = ds.write(out, formats=formats, subtomograms=args.subtomograms or False,
                           progress=not args.no_progress)
    finally:
        if stack_file is not None:  # the stacks are written: the rendering buffer goes
            stack_file.unlink(missing_ok=True)
    counts = ds.truth["state_name"].value_counts().to_dict()
    print(f"{ds.particles.n_particles} particles ({counts}), "
          f"{int(ds.particles.visible.sum())} tilt images, SNR {config.snr:g} -> {out} "
          f"({len(written)} files, {time.perf_counter() - t0:.1f} s)")
    return 0

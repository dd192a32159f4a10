"""``tomohet reconstruct``: weighted average with gold-standard half maps and FSC."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.cli.common import (
    HelpFormatter,
    add_datadir_arg,
    pick_device,
    prepare_out_dir,
    stamp_config,
)
from tomohet.data.keys import file_half_sets

__all__ = ["add_parser", "run", "file_half_sets"]

EXAMPLE = """example:
  tomohet reconstruct run_optimisation_set.star --out recon/
  tomohet reconstruct subtomos.star --out recon/ --batch-size 16
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reconstruct", help="CTF/dose-weighted average from poses, with half maps and FSC",
        description="Back-project 2D tilt-series particles (or insert subtomograms with "
        "their 3D CTF volumes) at their poses; writes half maps, the Wiener-filtered full "
        "map, the FSC curve (fsc.csv, fsc.png) and the resolution at FSC 0.143.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("data", help="particle set (any supported format)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
    p.add_argument("--batch-size", type=int, default=32, help="particles per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the random half-set split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _save_fsc_plot(path: Path, freqs: np.ndarray, curve: np.ndarray, res: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(freqs, curve, lw=2)
    ax.axhline(0.143, color="grey", ls="--", lw=1)
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_title(f"half-map FSC: {res:.1f} A at 0.143")
    ax.set_ylim(-0.1, 1.05)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def run(args: argparse.Namespace) -> int:
    from tomohet.data.keys import half_sets
    from tomohet.io import read_particles, write_mrc
    from tomohet.io.atomic import atomic_write_text
    from tomohet.methods.average import average
    from tomohet.physics.fsc import shell_frequencies_per_A

    out = prepare_out_dir(args.out)
    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    device = pick_device(args.device)
    # the file's rlnRandomSubset / halfset, else a split drawn from the particle names
    halves = half_sets(particles.names, particles.tomo_names, args.seed, particles.table)
    res = average(particles, half_sets=halves, batch_size=args.batch_size, device=device,
                  seed=args.seed, progress=not args.no_progress)[0]
    px = particles.optics.pixel_size_A
    write_mrc(out / "half1.mrc", res.half1.numpy(), px)
    write_mrc(out / "half2.mrc", res.half2.numpy(), px)
    write_mrc(out / "average.mrc", res.full.numpy(), px)
    freqs = shell_frequencies_per_A(particles.optics.box, px)
    curve = res.fsc.numpy()
    table = pd.DataFrame({"shell": np.arange(len(curve)), "frequency_per_A": freqs,
                          "resolution_A": np.where(freqs > 0, 1 / np.maximum(freqs, 1e-12),
                                                   np.inf), "fsc": curve})
    atomic_write_text(out / "fsc.csv", table.to_csv(index=False))
    _save_fsc_plot(out / "fsc.png", freqs, curve, res.resolution_A)
    stamp_config(out, "reconstruct", vars(args))
    print(f"{particles.n_particles} particles -> {out}/average.mrc; "
          f"resolution {res.resolution_A:.1f} A at FSC 0.143")
    return 0

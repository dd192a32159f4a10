"""``tomohet ensemble``: regions whose occupancy co-varies across a volume ensemble
(SIREn / MAVEn style; :mod:`tomohet.analysis.ensemble`)."""

from __future__ import annotations

import argparse
import json

from tomohet.cli.common import HelpFormatter, prepare_out_dir, stamp_config

EXAMPLE = """examples:
  tomohet ensemble vae/sampled_volumes/ --out ens/
  tomohet ensemble wmd/component_01/ --threshold 0.02 --min-correlation 0.7 --out ens/

input: a folder of maps of one box (any folder of maps, or volumes sampled from a
continuous method's latent space: vae, wmdpca, nma component series). Writes
region_occupancy.csv (one row per map: each region's occupied fraction, as per-volume
features), regions.mrc (region index per voxel), region_XX.mrc masks,
co_occurrence.png/.csv (which regions appear together) and summary.json.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ensemble", help="co-varying occupancy regions of a volume ensemble",
                       description="Threshold every map, cluster the variable voxels by "
                       "their co-occupancy into regions, report each region's occupancy "
                       "per map and which regions appear together.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("folder", help="folder of maps (.mrc/.map) of one box")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=None,
                   help="density threshold; None: --threshold-fraction of the 99.5th "
                   "percentile of all voxels")
    p.add_argument("--threshold-fraction", type=float, default=0.35,
                   help="threshold as a fraction of the 99.5th percentile")
    p.add_argument("--min-fraction", type=float, default=0.05,
                   help="voxels occupied in fewer (or more than 1 - this) of the maps "
                   "are not variable")
    p.add_argument("--min-correlation", type=float, default=0.8,
                   help="voxels whose occupancies correlate above this join one region")
    p.add_argument("--min-voxels", type=int, default=8, help="smallest region kept")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from tomohet.analysis.ensemble import (
        co_occurrence,
        ensemble_regions,
        load_map_folder,
        plot_co_occurrence,
    )
    from tomohet.io.atomic import atomic_write_text
    from tomohet.io.mrc import write_mrc

    names, vols, px = load_map_folder(args.folder)  # bad folders fail before any work
    out = prepare_out_dir(args.out)
    stamp_config(out, "ensemble", vars(args))
    res = ensemble_regions(vols, args.threshold, args.threshold_fraction, args.min_fraction,
                           args.min_correlation, args.min_voxels)
    cols = {f"region_{j + 1}": res.occupancy[:, j] for j in range(res.n_regions)}
    atomic_write_text(out / "region_occupancy.csv",
                      pd.DataFrame({"volume": names, **cols}).to_csv(index=False))
    write_mrc(out / "regions.mrc", res.labels.astype(np.float32), px)
    for j in range(res.n_regions):
        write_mrc(out / f"region_{j + 1:02d}.mrc", (res.labels == j + 1).astype(np.float32), px)
    co = co_occurrence(res)
    ticks = [f"region_{j + 1}" for j in range(res.n_regions)]
    atomic_write_text(out / "co_occurrence.csv",
                      pd.DataFrame(co, index=ticks, columns=ticks).to_csv())
    if res.n_regions:
        plot_co_occurrence(res, out / "co_occurrence.png")
    summary = {"maps": len(names), "threshold": res.threshold, "regions": res.n_regions,
               "region_voxels": res.sizes.tolist(),
               "present_fraction": res.present().mean(0).tolist()}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"ensemble: {len(names)} maps, threshold {res.threshold:.4g}: {res.n_regions} "
          f"regions {res.sizes.tolist()} -> {out}")
    return 0

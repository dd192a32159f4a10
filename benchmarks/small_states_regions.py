"""Per-region (factorial) classification on low-SNR ladder cells (issue 12 diagnostic).

Discovery's focus mask on a two-component cell holds two separate blobs. Users classify
each with its own mask (present / absent) and combine the answers; this script measures
that against joint K-class focused EM, all from discovery's own output (no truth used
except for scoring):

* ``joint``: K-class focused EM from k-means on the residual maps in the whole mask;
* ``regions``: one 2-class focused EM per connected region of the mask (residual
  classification: the whole consensus subtracted), labels combined as sum_r b_r 2^r;
* ``regions+joint``: joint K-class EM started from the combined partition.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/small_states_regions.py \
        --mass 0.05 --snr 0.05
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace

import numpy as np
import small_states  # benchmarks/ is on sys.path when a script here is run
import torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.oracle import run_oracle
from tomohet.data.keys import half_sets
from tomohet.methods import discovery as disc
from tomohet.methods.detection import detect, gaussian_lowpass
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D
from tomohet.physics.projection import VolumeProjector


def log(record: dict) -> None:
    """One JSON line in ``results/small_states/regions.jsonl`` (small_states.log)."""
    small_states.log("regions", record)


def factor_ari(truth: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Best ARI of a binary partition against any 2+2 grouping of the true states."""
    best = -1.0
    for group in itertools.combinations(range(k), k // 2):
        f = np.isin(truth, group).astype(int)
        best = max(best, adjusted_rand_score(f, labels))
    return round(best, 3)


def focused_em(parts, cfg, keep, ref_mask, focus, consensus, halves, init, k, n_iter,
               plain, residual: bool = True) -> ML2D:
    engine = EMEngine(parts, replace(cfg, n_classes=k), keep, ref_mask, focus, consensus)
    if residual:
        engine.outside = VolumeProjector(consensus, pad=cfg.pad)
    m = ML2D(n_classes=k, n_iter=n_iter, random_state=0, progress=False)
    z = torch.zeros((8, 8, 8))
    found = disc.Discovery(focus, np.asarray(init), z, z, 8, 1.0, "local")
    m.setup_ = disc.Setup(engine, plain, found, True, focus)
    m.discovery_ = found
    state = m._initialise(engine, parts, keep, halves, 0)
    for it in range(n_iter):
        state = m._iterate(engine, state, halves, it + 1, None)
        if state.iteration < it + 1:
            break
    m.labels_ = state.posteriors.argmax(1)
    m.posteriors_ = state.posteriors
    m.priors_ = state.priors.numpy()
    return m


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mass", type=float, default=0.05)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--candidates", action="store_true",
                   help="regions: the log2(K) clusters with the highest z above 0.6 x the "
                        "threshold, significant or not")
    p.add_argument("--variants", default="regions,joint,regions+joint")
    args = p.parse_args()
    cell = LadderCell(args.mass, args.snr, args.n)
    ds = simulate_cell(cell, 0, {})
    truth, k = ds.states, ds.n_states
    olab = run_oracle(ds).labels
    oracle = adjusted_rand_score(truth, olab)
    groups = [g for g in itertools.combinations(range(k), k // 2) if 0 in g]
    oracle_factors = [round(adjusted_rand_score(np.isin(truth, g), np.isin(olab, g)), 3)
                      for g in groups]
    parts = ds.particles
    dev = torch.device("cpu")
    keep = np.arange(parts.n_particles)
    m0 = ML2D(n_classes=k, random_state=0, progress=False)
    cfg = m0._config(dev)
    ref_mask, _ = m0._masks(parts, dev)
    halves = half_sets(parts.names, parts.tomo_names, 0, parts.table)
    t0 = time.perf_counter()
    plain = EMEngine(parts, cfg, keep, ref_mask)
    bp = plain.reconstruct_pass(np.ones((len(keep), 1)), None, halves)
    consensus = plain.volumes_from(bp)[0][0]
    noise = plain.noise_pass(consensus[None], np.zeros(len(keep), dtype=np.int64))
    small = disc.small_box_for(plain.box, plain.px, 4.0 * plain.px)
    maps = disc.residual_maps(plain, consensus, noise, small)
    splits = disc.null_splits(plain.names, plain.tomo_names, 0, 99)
    det = detect(maps, splits)
    region, focus_small, scale = disc.region_from(det)
    base = {"cell": cell.name, "k": k, "oracle_ari": round(oracle, 3), "region": region,
            "scale": scale, "setup_s": round(time.perf_counter() - t0, 1),
            "oracle_factor_ari": oracle_factors, "candidates": args.candidates}
    if focus_small is None:
        log(dict(base, note="nothing found"))
        return
    if args.candidates:  # every cluster above extend x threshold, by peak z
        zsc = det.z_scales[list(det.scales).index(scale)].numpy()
        raw, n_raw = ndimage.label(zsc > 0.6 * det.threshold)
        peaks = np.asarray(ndimage.maximum(zsc, raw, index=np.arange(1, n_raw + 1)))
        lab = np.zeros_like(raw)
        for i, c in enumerate(np.argsort(-peaks)[: max(1, int(np.log2(k)))]):
            grown = ndimage.binary_dilation(raw == c + 1, iterations=2)
            lab[grown & (lab == 0)] = i + 1
        n_reg = int(lab.max())
        base["candidate_peaks"] = np.round(np.sort(peaks)[::-1][:4], 2).tolist()
        focus_small = torch.as_tensor(lab > 0).float()
    else:
        lab, n_reg = ndimage.label((focus_small > 0.5).numpy())
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n_reg + 1))
    if args.candidates:
        sizes = -np.arange(n_reg, dtype=float)  # keep the peak order
    base.update(n_regions=int(n_reg), region_voxels=[int(s) for s in sizes])
    lp = gaussian_lowpass(maps, scale)
    focus = disc.upsample_mask(focus_small, plain.box)
    joint_init = disc.component_labels(lp, focus_small, k, plain.order, 0)
    combined = None
    for v in args.variants.split(","):
        t0 = time.perf_counter()
        rec = dict(base, variant=v)
        if v == "regions":
            bits = []
            per = []
            for r in np.argsort(-sizes)[: max(1, int(np.log2(k)))]:
                rmask_small = focus_small * torch.as_tensor(lab == r + 1)
                init = disc.component_labels(lp, rmask_small, 2, plain.order, 0)
                rfocus = disc.upsample_mask(rmask_small, plain.box)
                m = focused_em(parts, cfg, keep, ref_mask, rfocus, consensus, halves, init,
                               2, args.iters, plain)
                bits.append(m.labels_)
                per.append({"voxels": int(sizes[r]), "init_factor_ari": factor_ari(truth, init, k),
                            "factor_ari": factor_ari(truth, m.labels_, k),
                            "populations": np.round(m.priors_, 3).tolist()})
            combined = sum(b * (2**i) for i, b in enumerate(bits))
            rec.update(per_region=per, ari=round(adjusted_rand_score(truth, combined), 3))
        elif v == "joint":
            m = focused_em(parts, cfg, keep, ref_mask, focus, consensus, halves, joint_init,
                           k, args.iters, plain)
            rec.update(init_ari=round(adjusted_rand_score(truth, joint_init), 3),
                       ari=round(adjusted_rand_score(truth, m.labels_), 3),
                       populations=np.round(m.priors_, 3).tolist())
        elif v == "regions+joint" and combined is not None:
            start = np.unique(combined, return_inverse=True)[1]
            if start.max() + 1 != k:
                rec["note"] = f"combined partition has {start.max() + 1} classes"
                log(rec)
                continue
            m = focused_em(parts, cfg, keep, ref_mask, focus, consensus, halves, start,
                           k, args.iters, plain)
            rec.update(init_ari=round(adjusted_rand_score(truth, start), 3),
                       ari=round(adjusted_rand_score(truth, m.labels_), 3),
                       populations=np.round(m.priors_, 3).tolist())
        rec["wall_s"] = round(time.perf_counter() - t0, 1)
        log(rec)


if __name__ == "__main__":
    main()

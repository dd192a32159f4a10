"""Low-SNR ladder cells (issue 12): is detection (the focus mask) or search the bottleneck?

On a ladder cell (default ``ladder-m10-snr0.05-n300``, box 48 at 12 A/px, seed 0, the
cell ``tomohet bench --ladder`` simulates) this runs ml2d's focused EM with

* ``true-mask/true-labels``: the focus mask from the true state maps (where any two
  differ by more than 10% of the largest difference, dilated 1 voxel, soft edge) and
  the true labels as the first partition (an oracle start: the model's ceiling);
* ``true-mask/kmeans``: the same mask, first partition from discovery's k-means on the
  residual maps inside it (what the default would do had detection found the region);
* ``default``: ml2d with its defaults (discovery decides mask and start).

It also prints discovery's statistics on the cell (the peak of the z-map, and whatever
:func:`tomohet.methods.discovery.discover` reports). One JSON line per variant is
appended to ``benchmarks/results/small_states/lowsnr.jsonl``.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/small_states_lowsnr.py \
        --mass 0.1 --snr 0.05 --variants stats,true-mask/true-labels,true-mask/kmeans
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import small_states  # benchmarks/ is on sys.path when a script here is run
import torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.bench.oracle import run_oracle
from tomohet.data.keys import half_sets
from tomohet.methods import discovery as disc
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D


def log(record: dict) -> None:
    """One JSON line in ``results/small_states/lowsnr.jsonl`` (small_states.log)."""
    small_states.log("lowsnr", record)


def true_focus(vols: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
    """Soft mask where any two true state maps differ by more than ``frac`` of the
    largest difference (low-passed by a 1-voxel Gaussian first), dilated by 1 voxel."""
    k = vols.shape[0]
    diff = torch.zeros_like(vols[0])
    for i in range(k):
        for j in range(i + 1, k):
            diff = torch.maximum(diff, (vols[i] - vols[j]).abs())
    sm = ndimage.gaussian_filter(diff.numpy().astype(np.float64), 1.0)
    hard = ndimage.binary_dilation(sm > frac * sm.max(), iterations=1)
    soft = np.clip(ndimage.gaussian_filter(hard.astype(np.float64), 1.0) * 1.5, 0, 1)
    return torch.from_numpy(soft.astype(np.float32))


def run_from(m: ML2D, parts, focus: torch.Tensor | None, labels: np.ndarray | str,
             n_iter: int, residual: bool = False) -> tuple[ML2D, np.ndarray]:
    """ml2d's EM (no annealing for a given start) with a given focus mask and first
    partition (``labels``, or ``"kmeans"``: discovery's k-means inside ``focus``)."""
    dev = torch.device("cpu")
    keep = np.arange(parts.n_particles)
    cfg = m._config(dev)
    ref_mask, _ = m._masks(parts, dev)
    halves = half_sets(parts.names, parts.tomo_names, m._seed(), parts.table)
    plain = EMEngine(parts, cfg, keep, ref_mask)
    bp = plain.reconstruct_pass(np.ones((len(keep), 1)), None, halves)
    consensus = plain.volumes_from(bp)[0][0]
    if isinstance(labels, str):
        noise = plain.noise_pass(consensus[None], np.zeros(len(keep), dtype=np.int64))
        small = disc.small_box_for(plain.box, plain.px, 4.0 * plain.px)
        maps = disc.residual_maps(plain, consensus, noise, small)
        fs = None if focus is None else _downsample(focus, small)
        labels = disc.component_labels(maps, fs, m.n_classes, plain.order, 0)
    init = np.asarray(labels)
    engine = plain if focus is None else EMEngine(parts, cfg, keep, ref_mask, focus,
                                                  consensus)
    if residual and focus is not None:  # classify residuals against the whole consensus
        from tomohet.physics.projection import VolumeProjector
        engine.outside = VolumeProjector(consensus.to(dev), pad=cfg.pad)
    z = torch.zeros((8, 8, 8))
    found = disc.Discovery(focus, init, z, z, 8, 1.0, "local")
    m.setup_ = disc.Setup(engine, plain, found, True, focus)
    m.discovery_ = found
    state = m._initialise(engine, parts, keep, halves, 0)
    m.trace_ = []  # ARI against the truth after each iteration (when given true labels)
    truth = None if isinstance(labels, str) else np.asarray(labels)
    for it in range(n_iter):
        state = m._iterate(engine, state, halves, it + 1, None)
        if truth is not None:
            m.trace_.append(round(adjusted_rand_score(truth, state.posteriors.argmax(1)), 3))
        if state.iteration < it + 1:  # converged
            break
    m.labels_ = state.posteriors.argmax(1)
    m.priors_ = state.priors.numpy()
    m.history_ = state.history
    return m, init


def _downsample(mask: torch.Tensor, small: int) -> torch.Tensor:
    big = mask.shape[-1]
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(mask.double())))
    lo = big // 2 - small // 2
    ft = ft[lo:lo + small, lo:lo + small, lo:lo + small]
    out = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(ft))).real
    return (out * (small / big) ** 3).clamp(0, 1).float()


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mass", type=float, default=0.1)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--box", type=int, default=None)
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--tau-fudge", type=float, default=1.0)
    p.add_argument("--residual", action="store_true",
                   help="subtract the whole consensus (class maps are differences)")
    p.add_argument("--variants", default="stats,true-mask/true-labels,true-mask/kmeans")
    args = p.parse_args()
    cell = LadderCell(args.mass, args.snr, args.n)
    over = {} if args.box is None else {"box": args.box}
    ds = simulate_cell(cell, 0, over)
    truth = ds.states
    k = ds.n_states
    vols = torch.as_tensor(ds.state_volumes).float()
    focus = true_focus(vols)
    base = {"cell": cell.name, "box": ds.particles.optics.box, "k": k}
    oracle = adjusted_rand_score(truth, run_oracle(ds).labels)
    for v in args.variants.split(","):
        t0 = time.perf_counter()
        m = ML2D(n_classes=k, n_iter=args.iters, random_state=0, progress=False,
                 tau_fudge=args.tau_fudge)
        rec = dict(base, variant=v, oracle_ari=round(oracle, 3), tau_fudge=args.tau_fudge)
        if v == "stats":
            m.fit(ds.particles)
            rec.update(ari=round(adjusted_rand_score(truth, m.predict()), 3),
                       discovery=m.discovery_.summary(),
                       focus_fraction_true=round(float(focus.mean()), 4))
        else:
            mask = None if v.startswith("no-mask") else focus
            start = truth if v.endswith("true-labels") else "kmeans"
            m, init = run_from(m, ds.particles, mask, start, args.iters, args.residual)
            rec["residual"] = args.residual
            rec.update(init_ari=round(adjusted_rand_score(truth, init), 3),
                       ari=round(adjusted_rand_score(truth, m.labels_), 3),
                       populations=np.round(m.priors_, 3).tolist(),
                       iterations=len(m.history_), ari_trace=m.trace_,
                       history=[{k: h[k] for k in ("log_likelihood", "resolution_A",
                                                   "populations", "changed_fraction")}
                                for h in m.history_])
        rec["wall_s"] = round(time.perf_counter() - t0, 1)
        log(rec)


if __name__ == "__main__":
    main()

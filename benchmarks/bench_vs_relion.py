"""Seconds per 3D-classification iteration: RELION 3.1 ``relion_refine`` vs tomohet ml3d.

Both run on the same simulated subtomograms (``discrete-realistic``, reconstructed from
its tilt series with their 3D CTF volumes and written as a RELION 3.1/4 subtomogram star
with ``rlnCtfImage``), one after the other in this one process, with the same number of
threads: RELION with ``--skip_align --K K --iter N`` from a consensus reference,
tomohet with N E+M passes of its ml3d engine (the same passes ``tomohet classify ml3d``
iterates) from the same consensus split into K random classes. Prints seconds per
iteration for each and the ratio (RELION / tomohet; above 1 = tomohet faster).

When ``relion_refine`` is not on PATH (Debian/Ubuntu package ``relion``), it prints a
skip message and exits 0 without simulating anything.

Run: ``python benchmarks/bench_vs_relion.py [--n 300] [--box 48] [--k 4] [--iter 5]
[--threads 1] [--out bench_vs_relion/]``. Nothing is asserted (issue 14; record the
figures in benchmarks/README.md with the machine and thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def relion_command(star: Path, ref: Path, out: Path, args: argparse.Namespace,
                   diameter_A: float) -> list[str]:
    """``relion_refine`` 3D classification of subtomograms at fixed poses, with paths
    relative to the star's folder (RELION resolves the star's image names from its
    working directory, so it runs there: see :func:`_run_relion`)."""
    here = star.parent

    def rel(p: Path) -> str:
        return os.path.relpath(p, here)

    return [
        "relion_refine", "--i", rel(star), "--o", rel(out / "run"), "--ref", rel(ref),
        "--ini_high", "40", "--dont_check_norm", "--K", str(args.k), "--iter", str(args.iter),
        "--tau2_fudge", "4", "--particle_diameter", f"{diameter_A:.0f}", "--skip_align",
        "--ctf", "--sym", "C1", "--flatten_solvent", "--zero_mask", "--pad", "2",
        "--j", str(args.threads), "--pool", "10",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--box", type=int, default=48)
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--iter", type=int, default=5, help="iterations for each program")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_vs_relion"))
    ap.add_argument("--tomohet-only", action="store_true",
                    help="time tomohet's side alone (no RELION needed; checks the script)")
    args = ap.parse_args()
    relion = shutil.which("relion_refine")
    if relion is None and not args.tomohet_only:
        print("bench_vs_relion: relion_refine is not on PATH (Debian/Ubuntu package "
              "'relion', RELION 3.1); skipped, nothing was run.")
        return 0
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    from tomohet.data.keys import half_sets
    from tomohet.data.subtomo_cache import subtomograms_from_tilts
    from tomohet.io.mrc import write_mrc
    from tomohet.io.readers import read_particles
    from tomohet.io.writers import write_particles
    from tomohet.methods.em import EMConfig, EMEngine, EMState
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = get_preset("discrete-realistic", n_particles=args.n, box=args.box,
                     n_tilts=args.tilts)
    tilts = simulate(cfg, seed=0).particles
    subtomos = subtomograms_from_tilts(tilts, progress=False)
    star = out / "particles.star"
    write_particles(subtomos, star, fmt="relion4")
    particles = read_particles(star)  # both programs read the same files
    n, px = particles.n_particles, particles.optics.pixel_size_A

    engine = EMEngine(particles, EMConfig(n_classes=args.k), np.arange(n))
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    consensus, _, _ = engine.volumes_from(engine.reconstruct_pass(np.ones((n, 1)), None,
                                                                  halves))
    ref = write_mrc(out / "consensus.mrc", consensus[0].numpy(), px)

    # RELION first, then tomohet, on the same files and threads
    relion_s, relion_iters = (None, 0) if args.tomohet_only else _run_relion(
        star, Path(ref), out / "relion", args, 0.8 * args.box * px)
    if relion_s is None and not args.tomohet_only:
        return 1

    rng = np.random.default_rng(0)
    weights = np.eye(args.k)[rng.integers(0, args.k, n)]
    vols, curves, _ = engine.volumes_from(engine.reconstruct_pass(weights, None, halves))
    noise = engine.noise_pass(consensus, np.zeros(n, dtype=np.int64))
    state = EMState(volumes=vols, priors=torch.full((args.k,), 1 / args.k),
                    sigma2=noise.sigma2, posteriors=weights, fsc=curves)
    t0 = time.perf_counter()
    for _ in range(args.iter):
        bp, noise, post, _ = engine.em_pass(state, halves)
        state.volumes, state.fsc, _ = engine.volumes_from(bp)
        state.sigma2, state.posteriors = noise.sigma2, post
        state.priors = torch.as_tensor(post.mean(0), dtype=torch.float32).clamp_min(1e-6)
    tomohet_s = time.perf_counter() - t0
    res: dict[str, float | int | None] = {
        "particles": n, "box": args.box, "classes": args.k, "threads": args.threads,
        "tomohet_iterations": args.iter, "tomohet_s_per_iter": tomohet_s / args.iter}
    print(f"tomohet ml3d:             {tomohet_s / args.iter:.1f} s/iteration")
    if relion_s is not None:
        res["relion_iterations"] = relion_iters
        res["relion_s_per_iter"] = relion_s / relion_iters
        res["ratio_relion_over_tomohet"] = (relion_s / relion_iters) / (tomohet_s / args.iter)
        print(f"RELION 3.1 relion_refine: {relion_s / relion_iters:.1f} s/iteration "
              f"({relion_iters} iterations, whole run {relion_s:.0f} s)")
        print(f"ratio RELION / tomohet:   {res['ratio_relion_over_tomohet']:.2f} "
              f"({args.threads} thread(s))")
    print(json.dumps(res))
    return 0


def _run_relion(star: Path, ref: Path, relion_out: Path, args: argparse.Namespace,
                diameter_A: float) -> tuple[float | None, int]:
    """Run relion_refine -> (wall seconds or None if it failed, iterations written)."""
    relion_out.mkdir(exist_ok=True)
    cmd = relion_command(star, ref, relion_out, args, diameter_A)
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=star.parent)
    relion_s = time.perf_counter() - t0
    (relion_out / "relion_refine.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print(f"relion_refine failed (exit {done.returncode}); see "
              f"{relion_out / 'relion_refine.log'}", file=sys.stderr)
        return None, 0
    iters = len(list(relion_out.glob("run_it*_model.star"))) - 1  # it000 = the start
    return relion_s, iters if iters > 0 else args.iter


if __name__ == "__main__":
    sys.exit(main())

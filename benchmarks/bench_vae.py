"""tomohet ``vae`` vs ``cryodrgn train_vae --encode-mode tilt``, same files, same CPU.

For each preset (default: continuous and mixed) the simulator writes one Warp/M-style
per-tilt star + ``.mrcs`` stack (particles renamed ``p000000``... so every tool keeps file
order). Both tools then train on that file as separate processes with the same thread
count and are measured the same way:

* seconds per epoch: the tool's own per-epoch training time (tomohet ``history.json``,
  cryoDRGN's "Epoch: N ... Finished in" log lines), and total wall time;
* peak memory: the process's peak resident size (``VmHWM``, sampled until it exits);
* accuracy: per-particle FSC AUC of the tool's map for each of ``--fsc-particles``
  particles against that particle's true map (both masked like ``tomohet bench``),
  |Spearman| of the latent against the true coordinate, and ARI of k-means on the latent
  (K = true number of states, for presets with discrete states).

cryoDRGN (GPL-3) runs from its own virtual environment, given by ``--cryodrgn`` (default
``/tmp/cdrgn-venv/bin/cryodrgn``, installed with ``pip install cryodrgn==4.3.1 -c
<file with torch==2.13.0>``); its pickled outputs are converted to ``.npy`` by that
environment's Python, so tomohet never unpickles anything. Without it the script says so
and benchmarks tomohet alone. cryoDRGN maps are compared with truth after one global
sign/hand choice (the one that maximises the FSC of the mean map), its convention.

Example (about 15 minutes on 2 shared cores)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vae.py --n-particles 400 \\
        --box 24 --epochs 8 --out bench_vae_out
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tomohet.bench.datasets import BenchDataset, from_simulated
from tomohet.bench.runner import _particle_fsc
from tomohet.bench.scoring import score_outputs
from tomohet.io import read_mrc, write_particles
from tomohet.sim import simulate
from tomohet.sim.presets import get_preset

PY = sys.executable


def run_measured(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; -> wall seconds, peak RSS (MB, VmHWM) and exit code."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        peak = 0.0
        while proc.poll() is None:
            try:
                text = Path(f"/proc/{proc.pid}/status").read_text()
                m = re.search(r"VmHWM:\s+(\d+) kB", text)
                if m:
                    peak = max(peak, int(m.group(1)) / 1024)
            except OSError:
                pass
            time.sleep(0.2)
    return {"wall_s": time.perf_counter() - t0, "peak_rss_MB": peak, "rc": proc.returncode}


def make_case(preset: str, args: argparse.Namespace, out: Path) -> tuple[BenchDataset, Path]:
    sim = simulate(get_preset(preset, n_particles=args.n_particles, box=args.box,
                              n_tilts=args.n_tilts), seed=args.seed)
    ds = from_simulated(sim, preset)
    names = [f"p{i:06d}" for i in range(ds.n_particles)]
    truth = ds.truth.copy()
    truth["particle"] = names
    for col in ("name", "rlnTomoParticleName"):
        if col in truth.columns:
            truth[col] = names
    parts = dataclasses.replace(ds.particles, names=names)
    ds = dataclasses.replace(ds, particles=parts, truth=truth)
    star = out / "data" / "particles.star"
    write_particles(parts, star, fmt="warp")
    return ds, star


def score(ds: BenchDataset, z: np.ndarray, vols: torch.Tensor | None,
          idx: np.ndarray) -> dict[str, float]:
    s = score_outputs(ds.states, ds.coords, None, z, seed=0)
    out = {k: float(s[k]) for k in ("ari", "rank_corr", "neigh_sim") if k in s}
    if vols is not None:
        out["fsc_auc"] = float(_particle_fsc(ds, vols, idx).mean_auc)
    return out


def run_tomohet(ds: BenchDataset, star: Path, args: argparse.Namespace, out: Path,
                env: dict[str, str], idx: np.ndarray, method: str = "vae") -> dict:
    """``tomohet train METHOD`` (``vae-et`` with --encode-skipped, so every particle is
    scored) on the star file."""
    from tomohet.analysis.volumes import decode, load_run

    run = out / f"tomohet_{method}"
    extra = ["--encode-skipped"] if method == "vae-et" else []
    cmd = [PY, "-m", "tomohet.cli.main", "--threads", str(args.threads), "train", method,
           str(star), "--zdim", str(args.zdim), "--epochs", str(args.epochs),
           "--n-tilts", str(args.train_tilts), "--out", str(run), "--no-progress",
           "--seed", str(args.seed)] + extra + args.tomohet_args.split()
    log = out / f"tomohet_{method}.log"
    res = run_measured(cmd, log, env)
    if res["rc"] != 0:
        return {"tool": f"tomohet {method}", "error": log.read_text()[-2000:]}
    hist = json.loads((run / "history.json").read_text())
    model, _, table = load_run(run)
    z = table[[c for c in table.columns if c.startswith("z")]].to_numpy(float)
    vols = decode(model, z[idx])
    per_epoch = [h["seconds"] + h.get("encode_seconds", 0.0) for h in hist]
    return {"tool": f"tomohet {method}", "s_per_epoch": float(np.mean(per_epoch)),
            **res, **score(ds, z, vols, idx)}


def _cdrgn_epoch_seconds(log: str) -> float:
    t = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in
         re.findall(r"Epoch: \d+ .*?Finished in (\d+):(\d+):([\d.]+)", log)]
    return float(np.mean(t)) if t else float("nan")


def _cdrgn_volumes(cd: Path, bin_dir: Path, run: Path, z: np.ndarray, idx: np.ndarray,
                   px: float, env: dict[str, str]) -> torch.Tensor:
    zfile = run / "z_eval.txt"
    np.savetxt(zfile, z[idx])
    vdir = run / "vols"
    subprocess.run([str(cd), "eval_vol", str(run / "weights.pkl"), "-c",
                    str(run / "config.yaml"), "--zfile", str(zfile), "-o", str(vdir),
                    "--Apix", str(px)], check=True, env=env, capture_output=True)
    files = sorted(vdir.glob("*.mrc"))
    return torch.stack([torch.as_tensor(np.asarray(read_mrc(f)[0]), dtype=torch.float32)
                        for f in files])


def _fix_convention(vols: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """One global sign/hand choice: the one whose mean map best matches the truth's."""
    mt = truth.mean(0).flatten()
    best, best_c = vols, -2.0
    for flip in (False, True):
        v = vols.flip(-3) if flip else vols
        c = float(torch.corrcoef(torch.stack([v.mean(0).flatten(), mt]))[0, 1])
        for sign in (1.0, -1.0):
            if sign * c > best_c:
                best, best_c = sign * v, sign * c
    return best


def run_cryodrgn(ds: BenchDataset, star: Path, args: argparse.Namespace, out: Path,
                 env: dict[str, str], idx: np.ndarray) -> dict:
    cd = Path(args.cryodrgn)
    tag = "cryodrgn train_vae (tilt)" + (" default dims" if args.cdrgn_default_dims else "")
    if not cd.exists():
        return {"tool": tag, "error": f"cryoDRGN not found at {cd}: install cryodrgn==4.3.1 "
                                      "in a separate venv (see module docstring)"}
    run = out / "cryodrgn"
    px, box = ds.pixel_size_A, ds.particles.optics.box
    common = ["-D", str(box), "--Apix", str(px)]
    subprocess.run([str(cd), "parse_pose_star", str(star), "-o", str(out / "pose.pkl")]
                   + common, check=True, env=env, capture_output=True)
    subprocess.run([str(cd), "parse_ctf_star", str(star), "-o", str(out / "ctf.pkl"),
                    "--ps", "0"] + common, check=True, env=env, capture_output=True)
    p = ds.particles
    dose = np.diff(np.sort(p.dose_e_per_A2[0][p.visible[0]]))
    tilt = np.diff(np.sort(p.tilt_deg[0][p.visible[0]]))
    dims = [] if args.cdrgn_default_dims else [
        "--enc-dim", str(args.width), "--dec-dim", str(args.width), "--tdim", str(args.width)]
    cmd = [str(cd), "train_vae", str(star), "--datadir", str(star.parent), "--encode-mode",
           "tilt", "--poses", str(out / "pose.pkl"), "--ctf", str(out / "ctf.pkl"),
           "--zdim", str(args.zdim), "-n", str(args.cdrgn_epochs or args.epochs),
           "--ntilts", str(args.train_tilts), "--dose-per-tilt", f"{np.median(dose):.3f}",
           "--angle-per-tilt", f"{np.median(tilt):.3f}", "--no-analysis", "--seed",
           str(args.seed), "--max-threads", str(args.threads), "-o", str(run)] + dims
    res = run_measured(cmd, out / "cryodrgn.log", env)
    log = (out / "cryodrgn.log").read_text()
    if res["rc"] != 0:
        return {"tool": tag, "error": log[-2000:]}
    znpy = run / "z.npy"
    # cryoDRGN stores latents in its own pickle format: its own loader, run in its own venv,
    # converts them to .npy; nothing of tomohet's reads a pickle
    subprocess.run([str(cd.parent / "python"), "-c", "import sys, numpy; from cryodrgn.utils "
                    "import load_pkl; numpy.save(sys.argv[2], load_pkl(sys.argv[1]))",
                    str(run / "z.pkl"), str(znpy)], check=True, env=env)
    z = np.load(znpy)
    vols = _cdrgn_volumes(cd, cd.parent, run, z, idx, px, env)
    vols = _fix_convention(vols, ds.true_volumes(idx).float())
    return {"tool": tag, "s_per_epoch": _cdrgn_epoch_seconds(log), **res,
            **score(ds, z, vols, idx)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="continuous,mixed")
    ap.add_argument("--n-particles", type=int, default=400)
    ap.add_argument("--box", type=int, default=24)
    ap.add_argument("--n-tilts", type=int, default=21, help="tilts simulated per particle")
    ap.add_argument("--train-tilts", type=int, default=10, help="tilts used per particle")
    ap.add_argument("--zdim", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cdrgn-epochs", type=int, default=None,
                    help="cryoDRGN epochs (default --epochs)")
    ap.add_argument("--width", type=int, default=256,
                    help="hidden width given to cryoDRGN (4x below its default of 1024; "
                         "tomohet's default is 128)")
    ap.add_argument("--cdrgn-default-dims", action="store_true",
                    help="run cryoDRGN with its own default widths (1024) instead")
    ap.add_argument("--tomohet-methods", default="vae,vae-et",
                    help="tomohet modes to run (vae = tomoDRGN mode, vae-et = cryoDRGN-ET)")
    ap.add_argument("--tomohet-args", default="", help="extra `tomohet train` options")
    ap.add_argument("--cryodrgn", default="/tmp/cdrgn-venv/bin/cryodrgn")
    ap.add_argument("--skip-cryodrgn", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fsc-particles", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_vae_out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows = []
    for preset in [p for p in args.presets.split(",") if p]:
        case = out / preset
        case.mkdir(parents=True, exist_ok=True)
        ds, star = make_case(preset, args, case)
        rng = np.random.default_rng(args.seed + 17)
        idx = np.sort(rng.choice(ds.n_particles, min(args.fsc_particles, ds.n_particles),
                                 replace=False))
        runs = [run_tomohet(ds, star, args, case, env, idx, m)
                for m in args.tomohet_methods.split(",") if m]
        if not args.skip_cryodrgn:
            runs.append(run_cryodrgn(ds, star, args, case, env, idx))
        for r in runs:
            r.update(preset=preset, particles=ds.n_particles, box=args.box)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                              for k, v in r.items() if k != "error"}), flush=True)
            if "error" in r:
                print(f"  {r['tool']} failed: {r['error'][-600:]}", flush=True)
        rows += runs
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench_vae.csv", index=False)
    cols = [c for c in ("preset", "tool", "s_per_epoch", "wall_s", "peak_rss_MB", "fsc_auc",
                        "rank_corr", "ari", "neigh_sim") if c in table.columns]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

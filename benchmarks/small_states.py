"""Small components (issue 12): data, diagnostics and discovery ideas, measured.

Data: the 4v4r 70S map with removable compact surface components cut from its own density
(``{"kind": "surface"}`` structures): one component of ``mass`` (2 states, 50/50) or two
independent ones of 5% and 3% (4 states, 25% each); 41 tilts +-60 deg, 5% missing tilts.

    python benchmarks/small_states.py oracle          # oracle ARI per SNR
    python benchmarks/small_states.py diag --snr 0.02 # EM monotonicity + oracle starts
    python benchmarks/small_states.py ideas --snr 0.02 --methods ml2d-old,ml2d

Each run appends one JSON line to benchmarks/results/small_states/<command>.jsonl.
Run with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from tomohet.bench.datasets import BenchDataset, from_simulated
from tomohet.bench.oracle import run_oracle
from tomohet.methods.em import EMEngine, EMState
from tomohet.physics.projection import volumes_from_sums
from tomohet.sim.acquisition import TiltScheme
from tomohet.sim.config import SimulationConfig
from tomohet.sim.simulate import simulate

RESULTS = Path(__file__).resolve().parent / "results" / "small_states"


def make_config(n_components: int = 1, mass: float = 0.05, snr: float = 0.02,
                n_particles: int = 300, box: int = 32, pixel_size_A: float = 13.0,
                missing: float = 0.05) -> SimulationConfig:
    """A 70S ribosome with 1 (2 states) or 2 (4 states: 5% and 3%) removable components."""
    if n_components == 1:
        comps = {"cap": {"direction": [1.0, 0.2, 0.0], "fraction": mass}}
        states = [{"name": "base", "components": [], "fraction": 0.5},
                  {"name": "cap", "components": ["cap"], "fraction": 0.5}]
    else:
        comps = {"capA": {"direction": [1.0, 0.2, 0.0], "fraction": 0.05},
                 "capB": {"direction": [-0.3, 1.0, 0.2], "fraction": 0.03}}
        states = [{"name": n, "components": c, "fraction": 0.25} for n, c in
                  (("base", []), ("A", ["capA"]), ("B", ["capB"]), ("AB", ["capA", "capB"]))]
    return SimulationConfig(
        name=f"ribo_{n_components}comp", n_particles=n_particles, box=box,
        pixel_size_A=pixel_size_A, snr=snr,
        structure={"kind": "surface", "map": "4v4r", "components": comps, "states": states},
        tilt=TiltScheme(-60.0, 60.0, 3.0, 2, 3.0), n_tomograms=4,
        tomogram_size_A=(5000.0, 5000.0, 1500.0), missing_tilt_rate=missing)


def make_dataset(seed: int = 1, **kw) -> BenchDataset:
    sim = simulate(make_config(**kw), seed=seed)
    ds = from_simulated(sim, sim.config.name)
    ds.sim = sim  # type: ignore[attr-defined]
    return ds


def log(command: str, record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{command}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------- oracle
def cmd_oracle(args) -> None:
    for snr in args.snrs:
        for nc in (1, 2):
            ds = make_dataset(n_components=nc, snr=snr, n_particles=args.n, seed=args.seed)
            o = run_oracle(ds)
            log("oracle", {"snr": snr, "components": nc, "n": args.n,
                           "oracle_ari": adjusted_rand_score(ds.states, o.labels)})


# ---------------------------------------------------------------------------- diagnostics
def _ml_volumes(engine: EMEngine, bp) -> torch.Tensor:
    """Plain maximum-likelihood M-step: merged half sums, a tiny constant regulariser."""
    data, weight = bp.grids()
    k = data.shape[0] // 2
    merged_d = data.reshape(k, 2, *data.shape[1:]).sum(1)
    merged_w = weight.reshape(k, 2, *weight.shape[1:]).sum(1)
    return volumes_from_sums(merged_d, merged_w, engine.box, 1e-3).cpu()


def em_trace(ds: BenchDataset, volumes: torch.Tensor, n_iter: int, freeze_noise: bool,
             ml_mstep: bool, use_mask: bool, anneal_iters: int = 0) -> list[dict]:
    """EM from ``volumes`` (K, D, D, D) with the production engine, recording the
    evidence, ARI and populations per iteration. ``freeze_noise``: keep the noise model
    of the true partition (then the reported evidence is comparable across iterations
    and must not fall under an ML M-step); ``ml_mstep``: unregularised volumes instead
    of the FSC-Wiener ones; ``use_mask``: the default soft spherical reference mask."""
    from tomohet.methods.ml import ML2D

    m = ML2D(n_classes=volumes.shape[0], anneal_iters=anneal_iters, progress=False)
    parts = ds.particles
    keep = np.arange(parts.n_particles)
    cfg = m._config(torch.device("cpu"))
    ref_mask, _ = m._masks(parts, torch.device("cpu"))
    engine = EMEngine(parts, cfg, keep, ref_mask if use_mask else None)
    halves = np.asarray(parts.table["rlnRandomSubset"]) - 1
    truth = ds.states
    noise = engine.noise_pass(volumes, truth)
    k = volumes.shape[0]
    state = EMState(volumes=volumes, priors=torch.full((k,), 1.0 / k),
                    sigma2=noise.sigma2.cpu(), posteriors=np.eye(k)[truth])
    out = []
    for it in range(n_iter):
        cap = m._anneal_cap(it) if anneal_iters else None
        bp, new_noise, post, ll = engine.em_pass(state, halves, cap)
        vols = _ml_volumes(engine, bp) if ml_mstep else engine.volumes_from(bp)[0]
        pri = torch.as_tensor(post.mean(0), dtype=torch.float32).clamp_min(1e-6)
        sigma2 = state.sigma2 if freeze_noise else new_noise.sigma2.cpu()
        out.append({"iteration": it + 1, "evidence": ll, "cap": cap,
                    "ari": adjusted_rand_score(truth, post.argmax(1)),
                    "populations": np.round(post.mean(0), 3).tolist()})
        state = EMState(volumes=vols, priors=pri / pri.sum(), sigma2=sigma2, posteriors=post,
                        iteration=it + 1)
    return out


def cmd_diag(args) -> None:
    ds = make_dataset(n_components=args.components, snr=args.snr, n_particles=args.n,
                      seed=args.seed)
    true_vols = ds.sim.state_volumes  # type: ignore[attr-defined]
    variants = [
        ("frozen-noise ML M-step, no mask", True, True, False, 0),
        ("frozen-noise Wiener M-step, mask", True, False, True, 0),
        ("production (noise re-estimated, Wiener, mask)", False, False, True, 0),
        ("production with default annealing (6)", False, False, True, 6),
    ]
    for name, freeze, ml, mask, anneal in variants:
        if args.only and args.only not in name:
            continue
        t0 = time.perf_counter()
        trace = em_trace(ds, true_vols, args.iters, freeze, ml, mask, anneal)
        ev = [r["evidence"] for r in trace]
        drops = [ev[i] - ev[i - 1] for i in range(1, len(ev)) if ev[i] < ev[i - 1]]
        log("diag", {"snr": args.snr, "components": args.components, "n": args.n,
                     "variant": name, "monotone": not drops,
                     "largest_drop": min(drops) if drops else 0.0,
                     "final_ari": trace[-1]["ari"], "trace": trace,
                     "wall_s": round(time.perf_counter() - t0, 1)})


# ---------------------------------------------------------------------------- ideas
def _method(name: str, k: int, seed: int):
    from tomohet.methods import get_method

    base, _, variant = name.partition("-")
    params: dict = {"n_classes": k, "random_state": seed, "progress": False}
    if base in ("ml2d", "ml3d"):
        params.update(n_iter=20)
    if base == "shc":
        params.update(n_runs=3)
    # since issue 12 the defaults are focus_mask="auto", init="components";
    # "-old" is the earlier default (whole map, random annealed starts)
    old = {"focus_mask": None, "init": "random"}
    options = {"auto": {"init": "components", "focus_mask": "auto"},
               "old": old,
               "init": {"init": "components", "focus_mask": None},
               "focus": {"focus_mask": "auto", "init": "random"},
               "noanneal": {**old, "anneal_iters": 0},
               "": {}}
    params.update(options[variant])
    return get_method(base, **params)


def cmd_ideas(args) -> None:
    ds = make_dataset(n_components=args.components, snr=args.snr, n_particles=args.n,
                      seed=args.seed)
    o = run_oracle(ds)
    oracle = adjusted_rand_score(ds.states, o.labels)
    for name in args.methods.split(","):
        t0 = time.perf_counter()
        m = _method(name, ds.n_states, args.seed).fit(ds.particles)
        a = adjusted_rand_score(ds.states, m.predict())
        log("ideas", {"snr": args.snr, "components": args.components, "n": args.n,
                      "seed": args.seed, "method": name, "ari": round(a, 3),
                      "oracle_ari": round(oracle, 3),
                      "fraction_of_oracle": round(a / oracle, 3) if oracle > 0 else math.nan,
                      "wall_s": round(time.perf_counter() - t0, 1)})


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("oracle")
    a.add_argument("--snrs", type=float, nargs="+", default=[0.3, 0.05, 0.02, 0.01])
    for q in (sub.add_parser("diag"), sub.add_parser("ideas")):
        q.add_argument("--snr", type=float, default=0.02)
        q.add_argument("--components", type=int, default=2)
    sub.choices["diag"].add_argument("--iters", type=int, default=8)
    sub.choices["diag"].add_argument("--only", default="")
    sub.choices["ideas"].add_argument("--methods", default="ml2d")
    for q in sub.choices.values():
        q.add_argument("--n", type=int, default=300)
        q.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    {"oracle": cmd_oracle, "diag": cmd_diag, "ideas": cmd_ideas}[args.command](args)


if __name__ == "__main__":
    main()

"""``tomohet train``: neural continuous heterogeneity (tilt-series VAE)."""

from __future__ import annotations

import argparse
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
  tomohet train vae run_optimisation_set.star --zdim 8 --out vae/
  tomohet train vae particles.star --zdim 8 --epochs 40 --out vae/ --resume
  tomohet train vae-et particles.star --zdim 8 --n-tilts 10 --out vae_et/
  tomohet analyze vae/
"""

MODES = {
    "vae": "tomoDRGN mode: a random subset of each particle's tilts every epoch",
    "vae-et": "cryoDRGN-ET mode: each particle's lowest-dose tilts; particles lacking "
              "them are reported and skipped",
    "vae3d": "OPUS-TOMO style 3D convolutional VAE on subtomograms (made on the fly from "
             "tilt stacks), fitted through each particle's wedge and CTF",
}


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="particle set (any supported tilt-series format)")
    p.add_argument("--zdim", type=int, required=True, help="latent dimension")
    p.add_argument("--out", required=True, help="output folder (checkpoints, maps, csv)")
    p.add_argument("--tomograms", default=None, help="tomograms star (RELION 5), if not found")
    add_datadir_arg(p)
    p.add_argument("--epochs", type=int, default=20, help="training epochs (total)")
    p.add_argument("--n-tilts", type=int, default=10,
                   help="tilts per particle (random subset per epoch, or lowest-dose set)")
    p.add_argument("--batch-size", type=int, default=16, help="particles per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--beta", type=float, default=1.0, help="KL weight")
    p.add_argument("--beta-warmup", type=int, default=3,
                   help="epochs over which the KL weight ramps up")
    p.add_argument("--encoder", choices=["backproject", "tilt"], default="backproject",
                   help="per-tilt back-projection pooled by a Wiener mean, or a per-tilt "
                        "MLP pooled by mean/attention")
    p.add_argument("--pooling", choices=["mean", "attention"], default="mean",
                   help="pooling of per-tilt embeddings (tilt encoder)")
    p.add_argument("--enc-dim", type=int, default=128, help="encoder hidden width")
    p.add_argument("--enc-layers", type=int, default=2, help="encoder hidden layers")
    p.add_argument("--enc-radius", type=int, default=None,
                   help="Fourier radius (px) the encoder sees (default box/8, >= 3)")
    p.add_argument("--dec-dim", type=int, default=128,
                   help="decoder hidden width (256+ for boxes above ~64 px)")
    p.add_argument("--dec-layers", type=int, default=3, help="decoder hidden layers")
    p.add_argument("--pe", choices=["gaussian", "geom"], default="gaussian",
                   help="positional encoding of Fourier coordinates")
    p.add_argument("--focus-mask", default=None,
                   help="vae / vae-et: where the encoder looks: 'auto' (the region where "
                   "discovery finds local variation above noise; the whole particle when "
                   "the variation is not local), 'none' (the whole particle) or a mask "
                   "(mrc); default: the method's")
    p.add_argument("--max-resolution", type=float, default=None,
                   help="highest resolution (A) used in training")
    p.add_argument("--encode-skipped", action="store_true",
                   help="vae-et: still encode skipped particles from the tilts they have")
    p.add_argument("--amp", action="store_true",
                   help="bf16 mixed precision on CUDA (faster; results then differ from CPU "
                        "beyond float32 rounding). Off by default")
    p.add_argument("--no-amp", action="store_true", help=argparse.SUPPRESS)  # the default
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in OUT/checkpoints")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="neural continuous heterogeneity (VAE)",
                       description="Train a VAE on 2D tilt-series particle images.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    modes = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, desc in MODES.items():
        m = modes.add_parser(name, help=desc, description=desc, epilog=EXAMPLE,
                             formatter_class=HelpFormatter)
        _add_args(m)
    return p


def params(args: argparse.Namespace, out: str) -> dict:
    if args.method == "vae3d":  # the options that apply to it
        if args.focus_mask is not None:
            raise SystemExit("tomohet train vae3d: --focus-mask applies to vae and vae-et")
        return {"zdim": args.zdim, "n_epochs": args.epochs, "batch_size": args.batch_size,
                "lr": args.lr, "beta": args.beta, "beta_warmup": args.beta_warmup,
                "max_resolution_A": args.max_resolution, "checkpoint_dir": out,
                "resume": args.resume}
    focus = {} if args.focus_mask is None else {"focus_mask": args.focus_mask}
    return focus | {
        "zdim": args.zdim, "n_epochs": args.epochs, "n_tilts": args.n_tilts,
        "batch_size": args.batch_size, "lr": args.lr, "beta": args.beta,
        "beta_warmup": args.beta_warmup, "encoder": args.encoder, "pooling": args.pooling,
        "enc_dim": args.enc_dim, "enc_layers": args.enc_layers, "enc_radius": args.enc_radius,
        "dec_dim": args.dec_dim, "dec_layers": args.dec_layers, "pe": args.pe,
        "max_resolution_A": args.max_resolution, "encode_skipped": args.encode_skipped,
        "amp": bool(args.amp and not args.no_amp), "checkpoint_dir": out, "resume": args.resume,
    }


def run(args: argparse.Namespace) -> int:
    from tomohet.io import read_particles
    from tomohet.methods import get_method
    from tomohet.methods.vae import TiltVAEMethod
    from tomohet.methods.vae3d import Vae3DMethod

    out = prepare_out_dir(args.out)
    particles = read_particles(args.data, tomograms=args.tomograms, datadir=args.datadir)
    device = pick_device(args.device)
    method = get_method(args.method, **params(args, str(out)), device=str(device),
                        progress=not args.no_progress, random_state=args.seed)
    stamp_config(out, f"train {args.method}", vars(args))
    t0 = time.perf_counter()
    method.fit(particles)
    assert isinstance(method, TiltVAEMethod | Vae3DMethod)
    if parallel.is_main():  # one rank writes the outputs
        method.save(out, particles)
    hist = method.history_
    last = hist[-1] if hist else {}
    skipped = len(getattr(method, "skipped_", []))
    kept = len(getattr(method, "kept_", range(particles.n_particles)))
    print(f"{args.method}: {kept} particles, {len(hist)} epochs in "
          f"{time.perf_counter() - t0:.1f}s; final loss {last.get('loss', float('nan')):.5g}, "
          f"active latent dims {last.get('active_dims', '?')}"
          + (f"; {skipped} skipped (see skipped.csv)" if skipped else "") + f" -> {out}")
    for w in method.warnings_:
        print(f"warning: {w}")
    return 0

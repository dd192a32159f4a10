"""``tomohet`` entry point: dispatches to one module per command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tomohet import __version__
from tomohet.cli.common import quiet_progress_when_logging
from tomohet.data.sources import DataError

# (command, module); a module that is not there yet is skipped
COMMANDS: list[tuple[str, str]] = [
    ("demo", "tomohet.cli.demo"),
    ("info", "tomohet.cli.info"),
    ("convert", "tomohet.cli.convert"),
    ("reconstruct", "tomohet.cli.reconstruct"),
    ("simulate", "tomohet.cli.simulate"),
    ("classify", "tomohet.cli.classify"),
    ("embed", "tomohet.cli.embed"),
    ("train", "tomohet.cli.train"),
    ("analyze", "tomohet.cli.analyze"),
    ("bench", "tomohet.cli.bench"),
    ("evaluate", "tomohet.cli.evaluate"),
    ("ensemble", "tomohet.cli.ensemble"),
    ("select", "tomohet.cli.select"),
    ("tree", "tomohet.cli.tree"),
    ("mapback", "tomohet.cli.mapback"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tomohet",
        description="Structural heterogeneity in situ from cryo-ET tilt series and subtomograms.",
        epilog="Example: tomohet info particles_optimisation_set.star",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tomohet {__version__}")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: OMP_NUM_THREADS or 2)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    parser.add_argument("--ranks", type=int, default=None, metavar="N",
                        help="run N gloo ranks on this machine (torch.distributed); across "
                        "machines start ranks with torchrun instead (README: Distributed)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module in COMMANDS:
        mod = importlib.import_module(module)
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def configure_threads(threads: int | None) -> None:
    import torch

    n = threads or int(os.environ.get("OMP_NUM_THREADS", "2") or 2)
    torch.set_num_threads(max(1, n))


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (OSError/ValueError keep their type name)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and \
            str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text if isinstance(exc, DataError) else f"{type(exc).__name__}: {text}"


def _rank_main(argv: list[str]) -> None:
    code = main(argv)
    if code:
        sys.exit(code)


def _spawn_ranks(n: int, argv: list[str]) -> int:
    """``tomohet --ranks N ...``: N local gloo ranks, each running the command."""
    from tomohet import parallel

    try:
        parallel.spawn(_rank_main, n, (argv,))
    except Exception as exc:  # a rank failed: its own error is printed above
        print(f"tomohet: a rank failed, every rank stopped ({one_line(exc)}); rerun the "
              "same command to resume from the last checkpoint", file=sys.stderr)
        return 1
    return 0


def _join_group(device: str | None) -> str | None:
    """Join the torch.distributed group of torchrun / --ranks; with NCCL each rank takes
    ``cuda:LOCAL_RANK``. -> the device this rank uses."""
    import torch

    from tomohet import parallel

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return device
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and ":" not in want:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} needs GPU {local}, this machine has "
                             f"{torch.cuda.device_count()}: start at most that many ranks "
                             "per machine, or use --device cpu")
        want = f"cuda:{local}"
    parallel.init_from_env(want)
    return want


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    configure_threads(args.threads)
    quiet_progress_when_logging()  # no progress-bar flood in log files
    from tomohet import parallel

    try:
        if args.ranks is not None and args.ranks > 1 and "RANK" not in os.environ:
            return _spawn_ranks(args.ranks, list(sys.argv[1:] if argv is None else argv))
        args.device = _join_group(args.device)
        try:
            result = args._run(args)
            parallel.barrier()
        finally:
            parallel.shutdown()
    except (DataError, OSError, ValueError, parallel.RankFailure) as exc:
        # bad input: one line naming the file and the field, never a traceback
        # (TOMOHET_DEBUG=1 shows the traceback, for bug reports)
        if os.environ.get("TOMOHET_DEBUG"):
            raise
        print(f"tomohet {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

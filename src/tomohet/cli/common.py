"""Helpers shared by CLI commands: device choice, output folders, config stamping."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tomohet import __version__
from tomohet.bench.progress import Eta, format_seconds  # noqa: F401  (re-exported)

__all__ = ["pick_device", "prepare_out_dir", "stamp_config", "HelpFormatter",
           "add_datadir_arg", "quiet_progress_when_logging", "Eta", "refuse_overwrite"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the example epilog's line breaks."""


def add_datadir_arg(p: argparse.ArgumentParser) -> None:
    """``--datadir DIR``: where the images named in the star lie (tomoDRGN/cryoDRGN name)."""
    p.add_argument("--datadir", default=None, metavar="DIR",
                   help="folder of the image stacks / subtomograms / CTF volumes when the "
                   "star's paths (rlnImageName, rlnCtfImage) are relative to another "
                   "folder; tried before the star's folder")


def pick_device(requested: str | None) -> torch.device:
    """``--device`` or CUDA when present, else CPU (:func:`tomohet.methods.base.resolve_device`)."""
    from tomohet.methods.base import resolve_device

    return resolve_device(requested)


def prepare_out_dir(path: str | Path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return repr(v)


def stamp_config(out_dir: str | Path, command: str, config: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` (command, arguments, version, environment) next to outputs.

    When the arguments name the particles read (``data``, with ``tomograms`` and
    ``datadir``), an ``input`` record with their absolute paths is added so that the run
    folder can be re-read from anywhere (:mod:`tomohet.analysis.runs`); ``extra`` adds or
    replaces top-level entries (e.g. the detected format, a hierarchical run's parent).
    """
    from tomohet.analysis.runs import input_record
    from tomohet.io.atomic import atomic_write_text

    payload = {
        "command": command,
        "tomohet_version": __version__,
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "config": {k: _jsonable(v) for k, v in config.items() if not k.startswith("_")},
    }
    data = config.get("data")
    if isinstance(data, str | Path) and Path(data).exists() and not Path(data).is_dir():
        payload["input"] = input_record(data, config.get("tomograms"), config.get("datadir"))
    payload.update({k: _jsonable(v) for k, v in (extra or {}).items()})
    path = Path(out_dir) / "config.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def refuse_overwrite(paths: list[Path], force: bool) -> None:
    """DataError naming the first of ``paths`` that exists, unless ``force``."""
    from tomohet.data.sources import DataError

    if force:
        return
    for p in paths:
        if Path(p).exists():
            raise DataError(f"{p}: exists; pass --force to overwrite it")


# ---------------------------------------------------------------- progress and ETA
LOG_MININTERVAL_S = 30.0


def quiet_progress_when_logging(stream: Any = None) -> bool:
    """Progress bars that do not flood log files, for every bar in the process.

    When ``stream`` (default stderr, where tqdm writes) is not a terminal, every tqdm bar
    refreshes at most every :data:`LOG_MININTERVAL_S` seconds (each refresh still shows
    the rate and the ETA) instead of ten times a second: tqdm's default ``mininterval``
    is raised once, here, for bars created afterwards in this process, and
    ``TQDM_MININTERVAL`` is set for child processes. Bars that pass their own
    ``mininterval`` keep it. Returns True when the bars were quietened.
    """
    import os
    from functools import partialmethod

    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return False
    import tqdm.std

    os.environ.setdefault("TQDM_MININTERVAL", str(LOG_MININTERVAL_S))
    init = tqdm.std.tqdm.__dict__["__init__"]
    func = init.func if isinstance(init, partialmethod) else init
    keywords = dict(init.keywords) if isinstance(init, partialmethod) else {}
    keywords["mininterval"] = LOG_MININTERVAL_S
    tqdm.std.tqdm.__init__ = partialmethod(func, **keywords)  # type: ignore[method-assign]
    return True



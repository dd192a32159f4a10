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

__all__ = ["pick_device", "prepare_out_dir", "stamp_config", "HelpFormatter",
           "add_datadir_arg"]


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


def stamp_config(out_dir: str | Path, command: str, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (command, arguments, version, environment) next to outputs."""
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
    path = Path(out_dir) / "config.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path

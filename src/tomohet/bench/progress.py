"""Progress for long commands: ``[what] i/n done, elapsed, ETA`` lines (one home; the
CLI and the benchmark runners print them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Eta", "SayStream", "format_seconds"]


class Eta:
    """Prints ``[what] i/n done, elapsed, ETA`` after each of ``n`` steps of a long command
    (mean time per finished step x steps left; steps of unequal cost make it rough)."""

    def __init__(self, what: str, n: int, stream: Any = None) -> None:
        self.what, self.n, self.done = what, max(int(n), 1), 0
        self.t0 = time.perf_counter()
        self.stream = stream

    def remaining_s(self) -> float:
        if self.done == 0:
            return float("nan")
        per = (time.perf_counter() - self.t0) / self.done
        return per * (self.n - self.done)

    def step(self, label: str = "") -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        left = self.remaining_s()
        msg = (f"[{self.what}] {self.done}/{self.n} done{' (' + label + ')' if label else ''}"
               f", {format_seconds(elapsed)} elapsed"
               + (f", ETA {format_seconds(left)}" if self.done < self.n else ""))
        print(msg, file=self.stream or sys.stdout, flush=True)
        return msg


def format_seconds(s: float) -> str:
    """``75.2`` -> ``"1m15s"``; ``12`` -> ``"12s"``."""
    if not s == s:  # NaN
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class SayStream:
    """A file-like ``write`` that hands each line to ``say`` (the runner's logger)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def write(self, text: str) -> None:
        if text.strip():
            self.say(text.rstrip("\n"))

    def flush(self) -> None:
        pass

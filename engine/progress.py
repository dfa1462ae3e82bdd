"""Per-stage progress lines with throughput, e.g. ``[snippets] 120/498 snippets  14.2 snippets/s``."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class StageTimer:
    """Counts work of one stage; ``reused`` counts units found done in the run store."""

    name: str
    total: int
    unit: str
    quiet: bool
    done: int = 0
    reused: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    last_print: float = 0.0

    def advance(self, n: int = 1, reused: bool = False) -> None:
        self.done += n
        if reused:
            self.reused += n
        now = self.ended = time.perf_counter()
        if now - self.last_print >= 1.0 or self.done >= self.total:
            self.last_print = now
            self._print()

    @property
    def seconds(self) -> float:
        """From the stage's start to its last item (or to now while it runs)."""
        return (self.ended or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Newly computed items per second (reused ones excluded)."""
        return (self.done - self.reused) / max(self.seconds, 1e-9)

    def _print(self) -> None:
        if self.quiet:
            return
        reuse = f", {self.reused} reused" if self.reused else ""
        print(f"[{self.name}] {self.done}/{self.total} {self.unit}{reuse}  {self.rate:.1f} {self.unit}/s",
              file=sys.stderr, flush=True)


class Progress:
    """Factory of stage timers; keeps them for the run summary (stage -> seconds)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.stages: list[StageTimer] = []

    def stage(self, name: str, total: int, unit: str = "frames", estimate: bool = False) -> StageTimer:
        timer = StageTimer(name=name, total=total, unit=unit, quiet=self.quiet)
        self.stages.append(timer)
        return timer

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"note: {message}", file=sys.stderr, flush=True)

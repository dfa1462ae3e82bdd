"""``Progress`` hands out one ``StageTimer`` per stage and keeps them for the run summary.

A stage counts units (frames, snippets); units found done in the run store advance it as
``reused`` and take no part in its rate or ETA. A stage ends when it reaches a known
total, when the next stage starts, when it is used as a context manager and the block
ends, or when ``Progress.close()`` runs. What the user sees depends on the mode (see
``sinks``): live bars on a terminal, plain lines in logs, JSON lines, or only warnings.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import IO, Iterator

from .sinks import MODES, make_sink, resolve_mode
from .summary import summary_lines, summary_record


class StageTimer:
    """Counts the work of one stage.

    ``total``: units the stage will do; ``None`` when unknown. ``estimate``: the total is
    a guess (e.g. from a container's frame count) and grows if exceeded. ``seconds``: wall
    time of the stage in this run (start to end, or to now while it runs); ``rate``:
    units computed in this run per second of the stage's own work (reused units excluded):
    the time inside ``working()`` blocks when the stage marks them (stages that run side by
    side, shot after shot), else its wall time.
    """

    RATE_WINDOW = 60.0  # seconds of recent work the rate is measured over, once there are that many

    def __init__(self, progress: "Progress", name: str, total: int | None, unit: str, estimate: bool):
        self._progress = progress
        self._lock = progress._lock
        self.name = name
        self.unit = unit
        self.total = None if total is None else max(int(total), 0)
        self.estimate = bool(estimate) and self.total is not None
        self.done = 0
        self.reused = 0
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.busy = 0.0  # seconds inside working() blocks
        self._working_since: float | None = None
        self._history: deque[tuple[float, int]] = deque()  # (working seconds, computed) after each advance
        self.status = "running"  # then "done", or "stopped" (ended by an error before its work was done)

    # -- what stages call ---------------------------------------------------------------

    def advance(self, n: int = 1, reused: bool = False) -> None:
        """``n`` more units done; ``reused``: found done in the run store (not computed now)."""
        if n <= 0:
            return
        with self._lock:
            self.done += n
            if reused:
                self.reused += n
            else:
                self._remember()
            if self.total is not None and self.done > self.total:
                self.total = self.done  # an estimate (or a wrong total) never shows as done > total
            if self.closed:
                return
            if self.total is not None and not self.estimate and self.done >= self.total:
                self._end("done")  # the end line (or the finished bar) says the rest
            else:
                self._progress._sink.update(self)

    def set_total(self, n: int | None, estimate: bool = False) -> None:
        """The stage's total is now known (``estimate=False``) or guessed better (``True``)."""
        with self._lock:
            self.total = None if n is None else max(int(n), self.done)
            self.estimate = bool(estimate) and self.total is not None
            if self.closed:
                return
            if self.total is not None and not self.estimate and self.done >= self.total:
                self._end("done")
            else:
                self._progress._sink.update(self, force=True)

    @contextmanager
    def working(self) -> Iterator[None]:
        """Mark a stretch of this stage's own work (its rate counts only such time)."""
        with self._lock:
            self._working_since = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.busy += time.perf_counter() - self._working_since
                self._working_since = None

    def close(self, complete: bool = True) -> None:
        """End the stage; ``complete``: its work is done (an open total becomes the count done)."""
        with self._lock:
            if not self.closed:
                self._end("done" if complete else "stopped")

    def __enter__(self) -> "StageTimer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)

    # -- what summaries and sinks read --------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.ended is not None

    @property
    def computed(self) -> int:
        """Units computed in this run."""
        return self.done - self.reused

    @property
    def seconds(self) -> float:
        """Wall time of the stage in this run (to now while it runs)."""
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    @property
    def working_seconds(self) -> float:
        """Seconds of the stage's own work (see the class docstring)."""
        if not self.busy and self._working_since is None:
            return self.seconds
        running = time.perf_counter() - self._working_since if self._working_since is not None else 0.0
        return self.busy + running

    def _remember(self) -> None:
        now = self.working_seconds
        self._history.append((now, self.computed))
        while len(self._history) > 2 and self._history[1][0] < now - self.RATE_WINDOW:
            self._history.popleft()

    @property
    def rate(self) -> float:
        """Units computed in this run per second of work; while the stage runs, over the last
        ``RATE_WINDOW`` seconds of work once there are that many (a slow first unit, warm-up, ages
        out of the ETA); reused units excluded (0.0 when none)."""
        seconds = self.working_seconds
        if not self.computed or seconds <= 0:
            return 0.0
        if not self.closed and self._history and self._history[0][0] < seconds - self.RATE_WINDOW:
            since, computed = self._history[0]
            return (self.computed - computed) / (seconds - since)
        return self.computed / seconds

    @property
    def fraction(self) -> float | None:
        """Share of the total done (``None`` when the total is unknown)."""
        if self.total is None:
            return None
        return min(self.done / self.total, 1.0) if self.total else 1.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's rate; ``None`` when it cannot be told (no total, no rate yet)."""
        if self.closed:
            return 0.0
        if self.total is None or not self.rate or (self.estimate and self.done >= self.total):
            return None
        return (self.total - self.done) / self.rate

    def record(self) -> dict:
        """Plain values for summaries and JSON: name, unit, total, done, reused, computed, seconds (wall),
        working_seconds (the stage's own work), rate."""
        return {"name": self.name, "unit": self.unit, "total": self.total, "estimate": self.estimate,
                "done": self.done, "reused": self.reused, "computed": self.computed,
                "seconds": self.seconds, "working_seconds": self.working_seconds, "rate": self.rate,
                "status": self.status}

    def _end(self, status: str) -> None:
        if status == "done" and (self.total is None or self.estimate):
            self.total, self.estimate = self.done, False  # the count is known at last
        self.ended = time.perf_counter()
        self.status = status
        self._progress._sink.end(self)

    def __repr__(self) -> str:
        return (f"StageTimer({self.name!r}, {self.done}/{self.total} {self.unit}, reused={self.reused}, "
                f"{self.status})")


class Progress:
    """Stage timers of one run, shown according to ``mode``.

    ``mode``: ``"auto"`` (bars when ``stream`` is a terminal, else plain lines), ``"bar"``,
    ``"plain"``, ``"json"`` (one JSON object a line) or ``"quiet"`` (warnings only); a bool
    is read as the old ``quiet`` flag. ``stream``: where everything goes (default: the
    process's stderr when ``Progress`` is made). ``interval``: seconds between the
    periodic lines of plain and JSON output. ``advance`` may be called from another
    thread (e.g. a writer thread) than the one that starts stages.
    """

    def __init__(self, mode: str | bool = "auto", stream: IO[str] | None = None, interval: float = 10.0):
        if isinstance(mode, bool):
            mode = "quiet" if mode else "auto"
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        self.stream = stream if stream is not None else sys.stderr
        self.interval = float(interval)
        self.mode = resolve_mode(mode, self.stream)
        self.stages: list[StageTimer] = []
        self.started = time.perf_counter()
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._sink = make_sink(self.mode, self.stream, self.interval, self._lock)

    @property
    def quiet(self) -> bool:
        return self.mode == "quiet"

    def stage(self, name: str, total: int | None, unit: str = "frames", estimate: bool = False,
              concurrent: bool = False) -> StageTimer:
        """Start a stage; ``total=None``: unknown. A stage ends the one still open, unless it runs
        ``concurrent``ly with others (the stages of the shot phase)."""
        with self._lock:
            if not concurrent:
                self._end_open(complete=True)
            timer = StageTimer(self, name, total, unit, estimate)
            self.stages.append(timer)
            self._sink.start(timer)
            return timer

    def event(self, name: str, **fields) -> None:
        """A machine-readable event (JSON output only, with ``t``: seconds since the run started),
        e.g. a shot's snippets starting or its outputs being complete."""
        with self._lock:
            self._sink.event(name, round(time.perf_counter() - self.started, 3), fields)

    def note(self, message: str) -> None:
        """An informational line (not shown when quiet)."""
        with self._lock:
            self._sink.note(message)

    def warning(self, message: str) -> None:
        """A warning: shown in every mode, quiet included, once per distinct text."""
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
            self._sink.warning(message)

    def summary(self, this_run_seconds: float, cumulative_seconds: float | None, frames: int, *,
                runs: int | None = None, main_stage: str | None = None) -> list[str]:
        """The run summary of ``self.stages`` (see ``summary_lines``); JSON mode also emits it as an event."""
        with self._lock:
            kw = dict(runs=runs, main_stage=main_stage)
            if self.mode == "json":
                self._sink.summary(summary_record(self.stages, this_run_seconds, cumulative_seconds, frames, **kw))
            return summary_lines(self.stages, this_run_seconds, cumulative_seconds, frames, **kw)

    def close(self, complete: bool = True) -> None:
        """End the stage still open (``complete=False``: it was stopped by an error)."""
        with self._lock:
            self._end_open(complete)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)

    def _end_open(self, complete: bool) -> None:
        for timer in self.stages:
            if not timer.closed:
                timer.close(complete)

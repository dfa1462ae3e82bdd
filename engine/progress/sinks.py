"""Where progress goes: live bars (tqdm; ``tqdm.auto`` widgets in a notebook), plain lines, JSON
lines, or warnings only.

Every sink gets the same calls, always under the ``Progress`` lock: ``start(timer)``,
``update(timer, force=False)`` after each advance, ``end(timer)``, ``note(text)``,
``warning(text)`` and ``summary(record)``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import IO

from tqdm import tqdm

from . import text

MODES = ("auto", "bar", "plain", "json", "notebook", "quiet")


def resolve_mode(mode: str, stream: IO[str]) -> str:
    """``auto`` becomes ``notebook`` in a Jupyter kernel, ``bar`` on a terminal (not ``TERM=dumb``),
    else ``plain``."""
    if mode != "auto":
        return mode
    if in_notebook():
        return "notebook"
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return "bar" if tty and os.environ.get("TERM") != "dumb" else "plain"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython already imported and running a kernel app)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def make_sink(mode: str, stream: IO[str], interval: float, lock: threading.RLock) -> "Sink":
    if mode == "bar":
        return BarSink(stream, lock)
    if mode == "notebook":
        from .notebook import NotebookStageBar

        return BarSink(stream, lock, bar=NotebookStageBar)
    if mode == "plain":
        return PlainSink(stream, interval)
    if mode == "json":
        return JsonSink(stream, interval)
    return Sink(stream)


class Sink:
    """Quiet: only warnings, one ``warning:`` line each."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, timer) -> None:
        pass

    def update(self, timer, force: bool = False) -> None:
        pass

    def end(self, timer) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def event(self, name: str, t: float, fields: dict) -> None:
        pass

    def warning(self, message: str) -> None:
        self._write(f"warning: {message}")

    def summary(self, record: dict) -> None:
        pass


def _rate_text(timer) -> str:
    if timer.computed:
        return f"{text.rate(timer.rate)} {timer.unit}/s"
    return "all reused" if timer.reused else f"? {timer.unit}/s"


def status_line(timer) -> str:
    """``[snippets]  1344/3548  37.9%  (120 reused)  3.1 snippets/s  ETA 11m51s``."""
    parts = [f"[{timer.name}]", f"{timer.done}/{text.total(timer.total, timer.estimate)}"]
    if timer.total is not None:
        parts.append(text.percent(timer.fraction, timer.estimate))
    if timer.reused:
        parts.append(f"({timer.reused} reused)")
    parts.append(_rate_text(timer))
    if timer.total is not None:
        parts.append(f"ETA {text.duration(timer.eta_s)}")
    return "  ".join(parts)


def start_line(timer) -> str:
    if timer.total is None:
        return f"[{timer.name}] start: {timer.unit}, total unknown"
    guess = " (estimated)" if timer.estimate else ""
    return f"[{timer.name}] start: {text.total(timer.total, timer.estimate)} {timer.unit}{guess}"


def end_line(timer) -> str:
    """``[snippets] done in 14m12s: 3548 snippets, 2657 computed (3.1 snippets/s), 891 reused``."""
    count = f"{timer.done}" if timer.done == timer.total else f"{timer.done}/{text.total(timer.total, timer.estimate)}"
    verb = "done in" if timer.status == "done" else "stopped after"
    head = f"[{timer.name}] {verb} {text.duration(timer.seconds)}: {count} {timer.unit}"
    rate = f"{text.rate(timer.rate)} {timer.unit}/s"
    if not timer.reused:
        return f"{head} ({rate})" if timer.computed else head
    if not timer.computed:
        return f"{head}, all reused"
    return f"{head}, {timer.computed} computed ({rate}), {timer.reused} reused"


class PlainSink(Sink):
    """One line at a stage's start, at most one every ``interval`` seconds while it runs, one at its end."""

    def __init__(self, stream: IO[str], interval: float):
        super().__init__(stream)
        self.interval = interval
        self._last: dict[int, float] = {}

    def _due(self, timer, force: bool) -> bool:
        now = time.perf_counter()
        if not force and now - self._last.get(id(timer), timer.started) < self.interval:
            return False
        self._last[id(timer)] = now
        return True

    def start(self, timer) -> None:
        self._last[id(timer)] = timer.started
        self._write(start_line(timer))

    def update(self, timer, force: bool = False) -> None:
        if self._due(timer, False):  # a new total alone is no reason for a line
            self._write(status_line(timer))

    def end(self, timer) -> None:
        self._last.pop(id(timer), None)
        self._write(end_line(timer))

    def note(self, message: str) -> None:
        self._write(f"note: {message}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class JsonSink(PlainSink):
    """The plain events as JSON objects, one a line, for machines."""

    def _emit(self, event: str, **fields) -> None:
        self._write(json.dumps({"event": event, **fields}, separators=(", ", ": ")))

    def _counts(self, timer) -> dict:
        return {"stage": timer.name, "unit": timer.unit, "done": timer.done, "total": timer.total,
                "estimate": timer.estimate, "reused": timer.reused, "computed": timer.computed}

    def start(self, timer) -> None:
        self._last[id(timer)] = timer.started
        self._emit("stage_start", stage=timer.name, unit=timer.unit, total=timer.total, estimate=timer.estimate)

    def update(self, timer, force: bool = False) -> None:
        if self._due(timer, force):
            fraction = timer.fraction
            self._emit("progress", **self._counts(timer),
                       percent=None if fraction is None else round(100 * fraction, 2),
                       rate=_round(timer.rate), eta_s=_round(timer.eta_s), elapsed_s=_round(timer.seconds))

    def end(self, timer) -> None:
        self._last.pop(id(timer), None)
        self._emit("stage_end", **self._counts(timer), status=timer.status, seconds=_round(timer.seconds),
                   working_seconds=_round(timer.working_seconds), rate=_round(timer.rate))

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def event(self, name: str, t: float, fields: dict) -> None:
        self._emit(name, t=t, **fields)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)

    def summary(self, record: dict) -> None:
        self._emit("summary", **record)


class StageFormat:
    """What a stage's tqdm bar shows, read from its ``StageTimer`` (mixed into a tqdm class).

    The rate and ETA come from units computed in this run (reused ones advance the bar
    but not the rate); an estimated total is shown as ``~N`` and an unknown one as ``?``.
    """

    monitor_interval = 0  # no tqdm monitor thread

    RUNNING = "{stage} {pct}|{bar}| {count}{reused} [{tail}]"
    UNKNOWN = "{stage} {count}{reused} [{tail}]"

    def __init__(self, timer, **kw):
        self.timer = timer
        super().__init__(**kw)

    @property
    def format_dict(self):
        d = super().format_dict
        t = self.timer
        d["n"], d["total"] = t.done, t.total
        d["bar_format"] = self.UNKNOWN if t.total is None else self.RUNNING
        if not d.get("ncols"):
            d["ncols"] = None  # a terminal of unknown width: no trimming
        d["rate"] = t.rate or None
        rate = f"{text.rate(t.rate)} {t.unit}/s" if t.computed else ("all reused" if t.reused else f"? {t.unit}/s")
        if t.closed:
            tail = f"{'done' if t.status == 'done' else 'stopped'} in {text.duration(t.seconds)}, {rate}"
        elif t.total is None:
            tail = f"{rate}, {text.duration(t.seconds)} elapsed"
        else:
            tail = f"{rate}, ETA {text.duration(t.eta_s)}, {text.duration(t.seconds)} elapsed"
        d.update(stage=f"[{t.name}]", pct=text.percent(t.fraction, t.estimate, digits=0).rjust(4),
                 count=f"{t.done}/{text.total(t.total, t.estimate)} {t.unit}",
                 reused=f" ({t.reused} reused)" if t.reused else "", tail=tail)
        return d


class StageBar(StageFormat, tqdm):
    """A stage's bar on a terminal."""


class BarSink(Sink):
    """One live tqdm bar per open stage (stages that run side by side get one line each, kept on
    screen when they end); notes print above the bars.

    A ticker redraws the open bars every ``tick`` seconds so elapsed time and ETA stay current
    while a slow unit runs.
    """

    def __init__(self, stream: IO[str], lock: threading.RLock, tick: float = 1.0, bar: type = StageBar):
        super().__init__(stream)
        self._lock = lock
        self.tick = tick
        self._bar_type = bar
        self._bars: dict[int, StageBar] = {}
        self._stop: threading.Event | None = None

    def start(self, timer) -> None:
        self._bars[id(timer)] = self._bar_type(timer, total=timer.total, unit=timer.unit, file=self.stream,
                                               leave=True, dynamic_ncols=True, mininterval=0.2, miniters=1,
                                               smoothing=0, disable=False, position=len(self._bars))
        if self._stop is None:
            self._stop = threading.Event()
            threading.Thread(target=self._ticker, args=(self._stop,), daemon=True, name="progress-bars").start()

    def _ticker(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            with self._lock:
                if stop.is_set():
                    return
                for bar in self._bars.values():
                    bar.refresh()

    def update(self, timer, force: bool = False) -> None:
        bar = self._bars.get(id(timer))
        if bar is None:
            return
        bar.total = timer.total
        step = timer.done - bar.n
        if force:
            bar.n = timer.done
            bar.refresh()
        elif step > 0:
            bar.update(step)

    def end(self, timer) -> None:
        bar = self._bars.pop(id(timer), None)
        if bar is None:
            return
        if not self._bars and self._stop is not None:
            self._stop.set()
            self._stop = None
        bar.total, bar.n = timer.total, timer.done
        bar.close()  # leave=True: draws the final state

    def note(self, message: str) -> None:
        self._bar_type.write(f"note: {message}", file=self.stream)

    def warning(self, message: str) -> None:
        self._bar_type.write(f"warning: {message}", file=self.stream)

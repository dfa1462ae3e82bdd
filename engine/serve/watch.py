"""What a job is doing, read from its log: the JSON progress lines of the worker's latest start."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .jobs import RUN_MARK


@dataclass
class JobProgress:
    """The latest start of a job: ``stages`` (name -> the last ``stage_start``/``progress``/``stage_end``
    record: done, total, unit, rate, eta_s, status), ``shots`` (done, total), warnings and notes."""

    stages: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def shots(self) -> tuple[int, int] | None:
        stage = self.stages.get("shots")
        return None if stage is None or stage.get("total") is None else (stage.get("done", 0), stage["total"])


def read_progress(log: Path) -> JobProgress:
    """Parse ``log`` from its last ``RUN_MARK``: JSON events and ``warning: ...`` lines."""
    progress = JobProgress()
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return progress
    starts = [i for i, line in enumerate(lines) if line.startswith(RUN_MARK)]
    for line in lines[starts[-1] + 1 if starts else 0:]:
        if line.startswith("warning: "):
            progress.warnings.append(line[9:])
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind in ("stage_start", "progress", "stage_end"):
            record = progress.stages.setdefault(event["stage"], {"done": 0, "status": "running"})
            record.update({k: v for k, v in event.items() if k != "event"})
        elif kind == "warning":
            progress.warnings.append(event.get("message", ""))
        elif kind == "note":
            progress.notes.append(event.get("message", ""))
    return progress


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def stage_rows(progress: JobProgress) -> list[list]:
    """One table row per stage: name, done/total unit, percent, rate, ETA, status."""
    rows = []
    for name, s in progress.stages.items():
        total = s.get("total")
        done = f"{s.get('done', 0)}/{total if total is not None else '?'} {s.get('unit', '')}".strip()
        percent = f"{100 * s.get('done', 0) / total:.0f}%" if total else ""
        rate = f"{s['rate']:.2f}/s" if s.get("rate") else ""
        rows.append([name, done, percent, rate, eta_text(s.get("eta_s")) if s["status"] == "running" else "",
                     s["status"]])
    return rows

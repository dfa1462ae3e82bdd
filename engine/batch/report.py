"""The batch report: one row per video, totals, the printed table and ``OUTROOT/batch_report.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...storage.files import write_text_atomically
from .archive import is_url
from .locations import filesystem, join

REPORT_NAME = "batch_report.json"
USER_MESSAGE_ERRORS = ("EngineError", "InputError", "ConfigError", "StoreMismatch", "EvalInputError")


def one_line(exc: BaseException) -> str:
    """User errors' messages as is, anything else ``TypeName: message``; always a single line."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    if type(exc).__name__ in USER_MESSAGE_ERRORS and text:
        return text[:500]
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__



@dataclass
class BatchReport:
    """Rows per video (input order) and totals; ``failed`` is the number of failed videos."""

    out_root: str
    rows: list[dict]
    seconds: float
    cluster: str
    report_path: str | None = None

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)

    @property
    def kept(self) -> int:
        """Videos not processed as asked whose finished outputs of an earlier run were kept."""
        return sum(r["status"] == "kept" for r in self.rows)

    def to_dict(self) -> dict:
        frames = sum(r["frames"] or 0 for r in self.rows if r["status"].startswith("done"))
        return {"out_root": self.out_root, "cluster": self.cluster, "seconds": round(self.seconds, 3),
                "videos": len(self.rows), "done": sum(r["status"].startswith("done") for r in self.rows),
                "with_warnings": sum(r["status"] == "done-with-warnings" for r in self.rows),
                "skipped": sum(r["status"] == "skipped" for r in self.rows), "kept": self.kept,
                "failed": self.failed,
                "frames_processed": frames, "frames_per_second": frames / max(self.seconds, 1e-9),
                "rows": self.rows}


def message(row: dict) -> str:
    """A row's error, or its first warning (and how many more)."""
    if row["error"]:
        return row["error"]
    warnings = row.get("warnings") or []
    return "" if not warnings else warnings[0] + (f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else "")


def format_table(report: BatchReport) -> str:
    """The printed report: output folder, frames, status, seconds, frames/s, source, error or warning."""
    header = ("video", "frames", "status", "seconds", "frames/s", "source", "error / warning")
    lines = [(r["name"], "" if r["frames"] is None else str(r["frames"]), r["status"], f"{r['seconds']:.1f}",
              "" if not r["fps"] else f"{r['fps']:.2f}", r["video"], message(r)) for r in report.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    totals = report.to_dict()
    out = [fmt.format(*header), *(fmt.format(*line) for line in lines),
           f"{totals['videos']} videos: {totals['done']} done ({totals['with_warnings']} with warnings), "
           f"{totals['skipped']} skipped, "
           + (f"{totals['kept']} kept (earlier outputs, not redone), " if totals["kept"] else "")
           + f"{totals['failed']} failed; "
           f"{totals['frames_processed']} frames in {report.seconds:.1f} s "
           f"({totals['frames_per_second']:.2f} frames/s)"]
    if report.report_path:
        out.append(f"report: {report.report_path}")
    return "\n".join(line.rstrip() for line in out)


def write_report(report: BatchReport) -> str:
    """``OUTROOT/batch_report.json`` (atomic for local folders); returns its location."""
    location = join(report.out_root, REPORT_NAME)
    blob = json.dumps(report.to_dict(), indent=2)
    if is_url(report.out_root):
        fs, path = filesystem(location)
        with fs.open(path, "wt") as f:
            f.write(blob)
    else:
        write_text_atomically(Path(location), blob)
    return location


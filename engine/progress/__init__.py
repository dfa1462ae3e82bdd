"""Progress of a run: one live bar per stage on a terminal, plain lines in logs, JSON lines for machines.

``Progress(mode, stream, interval)`` makes a ``StageTimer`` per stage (``progress.stage``);
stages call ``timer.advance(n, reused=...)``; ``progress.stages`` and ``summary_lines``
give the run summary (work computed in this run vs reused, this run's and all runs' time).
"""

from .core import Progress, StageTimer
from .sinks import MODES, status_line
from .summary import stage_record, summary_lines, summary_record

__all__ = ["MODES", "Progress", "StageTimer", "stage_record", "status_line", "summary_lines", "summary_record"]

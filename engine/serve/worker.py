"""One job of ``rdengine serve``, in a process of its own: ``python -m rdengine.engine.serve.worker JOB``.

It is ``rdengine process``: ``RollingDepth(**options)(input, JOB/out)`` with the job's options,
so its output folder is the command's, byte for byte, and a rerun resumes it. Progress goes to
stderr as JSON lines (the server tails them); SIGTERM stops it as Ctrl-C does (resumable); it
dies with the server (``PR_SET_PDEATHSIG``, set by the server when it starts this process).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(job_folder: str) -> int:
    """Run the job in ``job_folder``; the exit status says how it ended (0, 2 user error, 130 stopped)."""
    from ...api import RollingDepth
    from ...errors import RdengineError
    from ..warning_lines import warnings_as_lines

    signal.signal(signal.SIGTERM, interrupt)
    spec = json.loads((Path(job_folder) / "job.json").read_text())
    try:
        with warnings_as_lines(lambda text: print(f"warning: {text}", file=sys.stderr, flush=True)):
            RollingDepth(**spec["options"], progress="json")(spec["input"], Path(job_folder) / "out")
    except RdengineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

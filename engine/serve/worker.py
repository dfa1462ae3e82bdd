"""One job of ``rdengine serve``, in a process of its own: ``python -m rdengine.engine.serve.worker JOB``.

It is ``rdengine process``: ``RollingDepth(**options)(input, JOB/out)`` with the job's options,
so its output folder is the command's, byte for byte, and a rerun resumes it. Progress goes to
stderr as JSON lines (the server tails them); SIGTERM stops it as Ctrl-C does (resumable); it
dies with the server (``PR_SET_PDEATHSIG``), so a killed server leaves no run holding the store.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from .jobs import STOPPED_EXIT


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def die_with(server_pid: int) -> None:
    """Be killed (SIGKILL) when the server's process ends; exit now if it already has."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server_pid:
        sys.exit(STOPPED_EXIT)


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
        return STOPPED_EXIT
    return 0


if __name__ == "__main__":
    die_with(int(sys.argv[2]))
    sys.exit(main(sys.argv[1]))

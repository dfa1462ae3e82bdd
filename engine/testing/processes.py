"""The installed CLI run in a child process, as a user runs it (tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def default_sigint() -> None:
    """``preexec_fn`` giving a child Ctrl-C's default action even when the caller runs with SIGINT
    ignored (started in the background by a non-interactive shell: children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_rdengine(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``rdengine ARGS...`` in a fresh process; returns its exit status and captured output."""
    return subprocess.run([sys.executable, "-m", "rdengine.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})

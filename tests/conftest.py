"""Shared fixtures: a tiny random checkpoint in the real layout and real encoded clips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rdengine.engine.testing.random_checkpoint import write_random_checkpoint
from rdengine.engine.testing.synthetic_clip import write_clip

TINY_RES = 64


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint written by the project's own writer."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A real H.264 mp4 (24 frames, 64x48) made with PyAV."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=24, width=64, height=48)


def default_sigint() -> None:
    """``preexec_fn`` giving a child Ctrl-C's default action even when the tests run with SIGINT
    ignored (started in the background by a non-interactive shell: children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_rdengine(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "rdengine.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})

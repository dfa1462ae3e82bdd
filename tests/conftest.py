"""Shared fixtures: a tiny random checkpoint in the real layout and real encoded clips."""

from __future__ import annotations

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

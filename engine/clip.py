"""Which frames of the input a run processes, and their numbers and times.

A run processes a *clip* of its input: from ``--start`` (a video's frame index, counted from
0; an image sequence's own frame number, e.g. 1001), every ``--stride``-th frame
(``--target-fps`` chooses the stride that brings the input's rate nearest to it, as Video
Depth Anything's ``--target_fps`` does), at most ``--frames`` (``--max-frames``) frames.

Every processed frame keeps the input's frame number (the store's ``frame`` coordinate and
per-frame file names: 1001, 1003, ... or 0, 2, 4, ...) and its time in seconds from the
input's first frame (the ``time`` coordinate: a video's real time stamps, so a
variable-rate video keeps its timing; an image sequence's frame numbers at its rate). The
clip's rate, that of its outputs, is the input's rate / stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..storage.inputs import FrameSource, FrameView, SourceInfo
from .config import RunConfig
from .errors import EngineError

VFR_TOLERANCE = 0.25  # of a frame interval: times further from a constant rate make a variable-rate clip


@dataclass(frozen=True)
class Clip:
    """The processed frames: input positions ``first, first + step, ...``, at most ``count``
    (None: to the end) of the video ``stream`` (None for images); ``source_fps`` is the input's
    rate and ``fps`` the clip's."""

    first: int
    step: int
    count: int | None
    source_fps: float
    stream: int | None = None

    @property
    def fps(self) -> float:
        return self.source_fps / self.step

    def views(self, source: FrameSource) -> Iterator[FrameView]:
        """The clip's frames, streamed from ``source``."""
        return source.views(self.first, self.count, self.step)

    def expected(self, info: SourceInfo) -> int:
        """The clip's frame count as far as the input announces it (0 = unknown)."""
        available = -(-max(info.frames_estimate - self.first, 0) // self.step)
        if self.count is None:
            return available
        return min(self.count, available) if info.frames_estimate else self.count

    def numbers(self, info: SourceInfo, num_frames: int) -> np.ndarray:
        """``int64 [num_frames]``: each processed frame's number in the input (an image sequence's own)."""
        positions = self.first + self.step * np.arange(num_frames)
        if info.frame_numbers:
            return np.asarray(info.frame_numbers, dtype=np.int64)[positions]
        return positions.astype(np.int64)

    def times(self, source: FrameSource, numbers: np.ndarray, stamps: list[float | None]) -> np.ndarray:
        """``float64 [T]`` seconds from the input's first frame of the frames numbered ``numbers``:
        frame numbers at the input's rate (an image sequence's counted from its first number),
        unless a video's time stamps (``stamps``, recorded as ingest read the frames; read again,
        without converting, when ingest read none) stray from them by more than
        ``VFR_TOLERANCE`` of a frame (variable frame rate): then the time stamps, when every
        frame has one and they increase. A constant-rate video's times are so exact, not
        rounded to its container's clock (matroska keeps milliseconds)."""
        info = source.info
        first = info.frame_numbers[0] if info.frame_numbers else 0
        steady = (numbers - first) / self.source_fps
        if info.kind == "video" and len(stamps) != len(numbers):
            stamps = [view.time for view in self.views(source)]
        if len(stamps) != len(numbers) or any(t is None for t in stamps):
            return steady
        real = np.asarray(stamps, dtype=np.float64)
        if np.all(np.diff(real) > 0) and np.max(np.abs(real - steady)) > VFR_TOLERANCE / self.source_fps:
            return real
        return steady

    def to_dict(self) -> dict:
        """What the manifest records: the frames read decide the run's bytes."""
        return {"stream": self.stream, "first": self.first, "stride": self.step, "frames": self.count}


def select_clip(info: SourceInfo, cfg: RunConfig) -> tuple[Clip, list[str]]:
    """The clip ``cfg`` asks of the input ``info`` and notes worth a line (the stride a target
    rate chose, a start inside a numbering gap); EngineError for a start outside an image sequence."""
    notes = []
    step = cfg.stride
    if cfg.target_fps is not None:
        step = max(1, round(info.fps / cfg.target_fps))
        notes.append(f"--target-fps {cfg.target_fps:g}: {every(step)} of the {info.fps:g} fps input "
                     f"({info.fps / step:g} fps)")
    first = cfg.start
    numbers = info.frame_numbers
    if numbers and cfg.start:
        if cfg.start > numbers[-1]:
            raise EngineError(f"--start {cfg.start} is past the last frame ({numbers[-1]}) of {info.path} "
                              f"(frames {numbers[0]}-{numbers[-1]})")
        if cfg.start < numbers[0]:
            raise EngineError(f"--start {cfg.start} is before the first frame ({numbers[0]}) of {info.path}: an "
                              f"image sequence's frames are numbered as its files ({numbers[0]}-{numbers[-1]})")
        first = int(np.searchsorted(numbers, cfg.start))
        if numbers[first] != cfg.start:
            notes.append(f"{info.path} has no frame {cfg.start}: starting at frame {numbers[first]}")
    return Clip(first, step, cfg.frames, info.fps, info.stream), notes


def every(n: int) -> str:
    """``every frame``, ``every 2nd frame``, ..."""
    if n == 1:
        return "every frame"
    return f"every {n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')} frame"


def recording_times(frames: Iterator[FrameView], stamps: list[float | None]) -> Iterator[FrameView]:
    """``frames``, each one's time stamp appended to ``stamps`` on its way."""
    for frame in frames:
        stamps.append(frame.time)
        yield frame
        del frame  # not held while the next frame decodes


def variable_times(times: np.ndarray, fps: float) -> tuple[float, ...] | None:
    """``times`` when they stray from a constant ``fps`` by more than ``VFR_TOLERANCE`` of a frame
    (a variable-rate clip, or a sequence with gaps): outputs then keep them; None otherwise."""
    if len(times) < 2:
        return None
    steady = times[0] + np.arange(len(times)) / fps
    if np.max(np.abs(times - steady)) <= VFR_TOLERANCE / fps:
        return None
    return tuple(float(t) for t in times)

"""The interface every input shares: ``SourceInfo``, ``DecodeReport``, ``FrameSource``, ``FrameView``.

Frames are RGB in display orientation, one ``[H, W, 3]`` array at a time: ``uint8``
(8-bit sources), ``uint16`` (sources of more than 8 bits per channel) or ``float32`` in
[0, 1] (float sources). ``to_unit_float`` brings any of them to float32 [0, 1], ``to_uint8``
to 0-255.

``FrameSource.views`` streams the same frames as ``FrameView``s, read a band of rows at a
time: what ingest uses, so that a frame far larger than the processing size (8K) is never
converted to RGB whole (a video's decoded frame converts band by band, see ``video``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..timecode import Timecode


@dataclass(frozen=True)
class SourceInfo:
    """What is known about an input once opened (before any frame is streamed).

    ``width``/``height``: pixels of the first frame in display orientation (rotation applied).
    ``fps``: frames per second (video: the stream's average rate; images: the ``fps`` given, default 24).
    ``frames_estimate``: frames the container announces (header count, else duration x rate)
    or the number of image files; 0 when unknown.
    ``frame_numbers``: images only, the number in each file name in stream order (None for
    video, or when the names carry no unique numbers).
    ``description``: one human line saying what was opened and why (e.g. which stream).
    ``timecode``: the source's timecode (a ``Timecode``: a video's ``timecode`` tag labels frame
    0, the first EXR file's ``timeCode`` labels that file's number), None when it has none.
    ``number_digits``: images only, the digits the file names write frame numbers with
    (``shot_0101.exr``: 4; unpadded names: 1); 0 for video.
    ``choice``: which of several video streams was chosen and why (one line), "" when there was no choice.
    ``stream``: video only, the global index of the stream read.
    """

    path: str
    kind: str
    width: int
    height: int
    fps: float
    frames_estimate: int
    frame_numbers: tuple[int, ...] | None
    description: str
    timecode: Timecode | None = None
    number_digits: int = 0
    choice: str = ""
    stream: int | None = None


@dataclass
class DecodeReport:
    """What happened while ``FrameSource.frames`` ran; counts are frames unless stated.

    ``decoded``: frames yielded. ``dropped``: packets that could not be decoded (skipped).
    ``concealed``: frames the decoder output with errors concealed (kept).
    ``size_changes``: ``(frame index, (height, width))`` each time the decoded size changed,
    index counted from the stream's first frame. ``expected``: the source's ``frames_estimate``.
    ``frames_read``: frames the decoder produced from the stream's start (frames before
    ``start`` included). ``reached_end``: the stream was read to its end (not cut short by
    ``count`` or by the caller). ``read_error``: why reading the container stopped early, if it did.
    ``leading_packets``: packets before the stream's first keyframe (a capture or cut that starts
    mid-GOP): they decode to nothing.
    """

    decoded: int = 0
    dropped: int = 0
    concealed: int = 0
    size_changes: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    expected: int = 0
    frames_read: int = 0
    reached_end: bool = False
    read_error: str = ""
    leading_packets: int = 0

    def problems(self) -> list[str]:
        """One line per kind of trouble met; empty when the decode was clean."""
        lines = []
        if self.dropped:
            lines.append(f"{self.dropped} damaged packet(s) could not be decoded and were skipped")
        if self.concealed:
            lines.append(f"{self.concealed} frame(s) decoded with errors concealed (kept)")
        if self.size_changes:
            changes = ", ".join(f"frame {i}: {w}x{h}" for i, (h, w) in self.size_changes[:5])
            more = f" and {len(self.size_changes) - 5} more" if len(self.size_changes) > 5 else ""
            lines.append(f"frame size changes mid-stream ({changes}{more})")
        if self.read_error:
            lines.append(f"reading stopped after frame {self.frames_read}: {self.read_error}")
        if self.leading_packets:
            lines.append(f"the stream starts {self.leading_packets} frame(s) before its first keyframe (a capture "
                         "or cut that begins mid-GOP): those frames cannot be decoded and are skipped")
        tolerance = max(2, self.expected // 50)  # duration x rate estimates are approximate
        if self.reached_end and self.expected and self.frames_read + self.leading_packets < self.expected - tolerance:
            lines.append(f"only {self.frames_read} of about {self.expected} frames decode "
                         f"(the stream ends early: truncated file?)")
        return lines


class FrameView(ABC):
    """One frame, ``shape`` ``(H, W, 3)`` of ``dtype``, read a band of rows at a time.

    ``rows(start, stop)`` gives the same values as ``array()[start:stop]`` without needing the
    whole frame in memory at once (where the source allows). A view holds its source frame:
    drop it before asking for the next one.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    time: float | None = None  # seconds from the source's first frame (its time stamp), None when unknown

    @abstractmethod
    def rows(self, start: int, stop: int) -> np.ndarray:
        """``[stop - start, W, 3]``: rows ``[start, stop)`` of the frame."""

    @abstractmethod
    def array(self) -> np.ndarray:
        """The whole frame ``[H, W, 3]``."""


class ArrayView(FrameView):
    """A frame already in memory as an array."""

    def __init__(self, frame: np.ndarray):
        self.frame = frame
        self.shape, self.dtype = frame.shape, frame.dtype

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.frame[start:stop]

    def array(self) -> np.ndarray:
        return self.frame


class CroppedView(FrameView):
    """The top-left ``height x width`` part of another view (read in bands like it)."""

    def __init__(self, view: FrameView, height: int, width: int):
        self.view, self.width = view, width
        self.shape, self.dtype, self.time = (height, width, view.shape[2]), view.dtype, view.time

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.view.rows(start, min(stop, self.shape[0]))[:, :self.width]

    def array(self) -> np.ndarray:
        return self.rows(0, self.shape[0])


class FrameSource(ABC):
    """An opened input: ``info`` at once, frames streamed one at a time, a content identity."""

    info: SourceInfo
    report: DecodeReport

    @abstractmethod
    def frames(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
        """Yield the frames at positions ``start, start + step, ...`` (``count`` of them at most; to
        the end when None), one ``[H, W, 3]`` array at a time; ``report`` is renewed and filled as
        they are read."""

    def views(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[FrameView]:
        """The frames of ``frames(start, count, step)`` as ``FrameView``s (this default wraps each array)."""
        for frame in self.frames(start, count, step):
            yield ArrayView(frame)
            del frame  # not held while the next is read

    @abstractmethod
    def identity(self) -> str:
        """Hex sha256 of the content: changes when any frame's data changes, or frames are added or removed."""

    @abstractmethod
    def files(self) -> list[Path]:
        """The files the input reads."""

    def includes(self, path: Path) -> bool:
        """Whether a file at ``path`` is (or would be, once written) read as part of this input."""
        target = os.path.realpath(path)
        return any(os.path.realpath(p) == target for p in self.files())

    def stat(self) -> list[list[int]]:
        """Size and modification time of every file: a cheap check that the content is unchanged
        since ``identity`` was taken (a rerun hashes again only when this differs)."""
        return [[p.stat().st_size, p.stat().st_mtime_ns] for p in self.files()]


def check_range(start: int, count: int | None, step: int = 1) -> None:
    """``frames`` arguments: ``start >= 0``, ``count`` None or ``>= 0``, ``step >= 1`` (else ValueError)."""
    if start < 0 or (count is not None and count < 0) or step < 1:
        raise ValueError(f"start and count must be >= 0 and step >= 1 (got start={start}, count={count}, "
                         f"step={step})")


FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # the value of white; floats: 1.0


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Any frame (or rows of one) -> uint8: uint16 and float [0, 1] values rounded to 0-255."""
    if frame.dtype == np.uint8:
        return frame
    return np.clip(np.rint(to_unit_float(frame) * 255), 0, 255).astype(np.uint8)


def to_unit_float(frame: np.ndarray) -> np.ndarray:
    """Any frame ``[H, W, 3]`` -> float32 in [0, 1]: uint8 / 255, uint16 / 65535, float unchanged."""
    if frame.dtype in FULL_SCALE:
        return frame.astype(np.float32) / FULL_SCALE[frame.dtype]
    return frame.astype(np.float32, copy=False)

"""Video decode and encode with PyAV: bounded frame batches in, encoded RGB frames out.

Decoded frames are ``uint8 [B, H, W, 3]`` (RGB, display orientation: the stream's
rotation metadata is applied). Errors a user can cause raise ``VideoError`` with a
one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np


class VideoError(ValueError):
    """The input is not a decodable video (message names the file)."""


class VideoWarning(UserWarning):
    """The input decodes only partly (e.g. a truncated file); the decoded frames are kept."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream; ``width``/``height`` after rotation."""

    path: str
    width: int
    height: int
    fps: float
    frames_hint: int
    rotation: int
    pix_fmt: str
    codec: str


def _open(path: str | Path):
    p = Path(path)
    if not p.exists():
        raise VideoError(f"input not found: {p}")
    if p.is_dir():
        raise VideoError(f"input is a directory, not a video file: {p}")
    if p.stat().st_size == 0:
        raise VideoError(f"input is an empty (zero-byte) file: {p}")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"not a readable video file: {p} ({type(exc).__name__})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"no video stream in {p} (audio-only or data file)")
    return container


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in degrees, a multiple of 90."""
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB in display orientation (any pixel format, rotation applied)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = _rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns else rgb


def probe_video(path: str | Path) -> VideoInfo:
    """Read the stream header and the first frame; raises VideoError if nothing decodes."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot decode {path}: {exc}") from None
        if first is None:
            raise VideoError(f"no decodable video frame in {path}")
        height, width = _to_rgb(first).shape[:2]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(path=str(path), width=width, height=height, fps=float(rate),
                         frames_hint=int(stream.frames or 0), rotation=_rotation(first),
                         pix_fmt=str(stream.codec_context.pix_fmt), codec=stream.codec_context.name)


def iter_frames(path: str | Path, start: int = 0, count: int | None = None,
                batch: int = 16) -> Iterator[np.ndarray]:
    """Yield ``uint8 [B, H, W, 3]`` batches of frames ``[start, start+count)`` in decode order.

    A stream that breaks off (truncated file) ends early with a warning: the frames
    decoded so far are kept.
    """
    stop = None if count is None else start + count
    buf: list[np.ndarray] = []
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        ended = True
        try:
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    ended = False
                    break
                if index >= start:
                    buf.append(_to_rgb(frame))
                    if len(buf) == batch:
                        yield np.stack(buf)
                        buf = []
                index += 1
        except av.error.FFmpegError as exc:
            ended = False
            warnings.warn(f"{path}: decoding stopped after frame {index} ({exc}); keeping the decoded frames",
                          VideoWarning)
        if ended and (stop is None or index < stop):
            expected = _expected_frames(container, stream)
            if expected and index < expected - max(2, expected // 50):
                warnings.warn(f"{path}: only {index} of about {expected} frames decode (truncated file?); "
                              "keeping the decoded frames", VideoWarning)
    if buf:
        yield np.stack(buf)


def _expected_frames(container, stream) -> int:
    """Frame count the container announces (header count, else duration x rate); 0 if unknown."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return int(float(stream.duration * stream.time_base * rate))
    if container.format.name.startswith("matroska") and container.duration and rate:
        return int(container.duration / 1e6 * float(rate))
    return 0


def fingerprint(path: str | Path) -> str:
    """Cheap identity of an input file: size, mtime-independent hash of its head and tail."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 1 << 21:
            f.seek(-(1 << 20), 2)
            h.update(f.read())
    return h.hexdigest()[:24]



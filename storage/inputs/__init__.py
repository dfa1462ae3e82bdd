"""Inputs: one interface for video files and image sequences, with decode reports and content identity.

``open_input(path)`` returns a ``FrameSource``: ``info`` (a ``SourceInfo``), ``frames(start,
count)`` streaming ``[H, W, 3]`` RGB frames one at a time (``uint8``, ``uint16`` or ``float32``
in [0, 1]; ``to_unit_float`` unifies them) or, with ``views(start, count)``, as
``FrameView``s read a band of rows at a time, ``report`` (a ``DecodeReport`` filled as frames
are read) and ``identity()`` (sha256 of the content). User errors raise ``InputError`` (one
line naming the file); things kept but worth a line are ``InputWarning``.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError, InputWarning
from .image_sequence import ImageSequence, is_sequence_spec
from .source import ArrayView, DecodeReport, FrameSource, FrameView, SourceInfo, to_uint8, to_unit_float
from .video import VideoSource

__all__ = ["open_input", "FrameSource", "FrameView", "ArrayView", "SourceInfo", "DecodeReport", "InputError",
           "InputWarning", "to_uint8", "to_unit_float", "VideoSource", "ImageSequence"]


def open_input(path: str, *, stream: int | None = None, fps: float | None = None) -> FrameSource:
    """Open ``path`` as an image sequence or a video file.

    An existing folder, a name with a printf field (``shot_%04d.exr``, ``shot_####.exr``) or a
    glob (``plates/*.png``) is an image sequence; anything else (an existing file first) is a
    video file. ``stream``: a video's global stream index to decode (default: chosen, see
    ``video.choose_stream``). ``fps``: frames per second of an image sequence (default 24),
    or a replacement for a video's own rate.
    """
    path = str(path)
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be positive (got {fps}) for {path}")
    if Path(path).is_file() or not (Path(path).is_dir() or is_sequence_spec(path)):
        return VideoSource(path, stream=stream, fps=fps)
    if stream is not None:
        raise InputError(f"stream={stream} applies to video files; {path} is an image sequence")
    return ImageSequence(path, fps=fps)

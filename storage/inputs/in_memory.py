"""Frames given from Python: an array ``[T, H, W, 3]``, a list of arrays or PIL images, or an iterator.

``FrameSequence`` serves frames that can be read again by index (a numpy array or any array
with ``shape`` and indexing, a list): nothing is copied, each frame is converted when read.
An iterator can be read only once, but a run reads its frames more than once (ingest, then
the side-by-side video, point clouds and contact sheet) and must know their identity before
it starts, so ``spool_frames`` first writes it, losslessly, to a compressed Zarr array on disk
(hashing as it goes) and serves that: never more than one frame in memory.

Frames are RGB ``[H, W, 3]``: ``uint8`` (0-255) or ``uint16`` (0-65535) as given, any float
dtype as ``float32`` in [0, 1] (values outside, or NaN, are an ``InputError``), PIL images
converted to 8-bit RGB. Every frame must have the first frame's size. The identity of
in-memory frames is a hash of their bytes (``frames_digest``); they have no files. The
``path`` they report (and the stem of output files) is ``IN_MEMORY_NAME``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ...errors import InputError
from .image_sequence import DEFAULT_FPS
from .source import DecodeReport, FrameSource, SourceInfo, check_range

IN_MEMORY_NAME = "frames"
KIND = "memory"
SPOOL_PREFIX = ".rdengine-frames-"  # a spool folder under the output folder (removed with its result)


def as_frame(item: Any, index: int) -> np.ndarray:
    """One given frame as an RGB array ``[H, W, 3]`` (see the module docstring); ``InputError``
    naming frame ``index`` when it is not one."""
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(item, pil.Image):
        return np.array(item.convert("RGB"))
    frame = np.asarray(item)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame {index}: expected an RGB image [H, W, 3], got shape {list(frame.shape)}")
    if frame.dtype in (np.uint8, np.uint16):
        return frame if frame.flags.writeable else frame.copy()  # torch wants writable arrays
    if not np.issubdtype(frame.dtype, np.floating):
        raise InputError(f"frame {index}: dtype {frame.dtype} is not an image type (uint8, uint16, or float in [0, 1])")
    frame = frame.astype(np.float32, copy=False)
    if frame.size and not (np.isfinite(frame).all() and frame.min() >= 0 and frame.max() <= 1):
        raise InputError(f"frame {index}: float frames must hold values in [0, 1] (found {np.nanmin(frame):g} to "
                         f"{np.nanmax(frame):g}{', and NaN or inf' if not np.isfinite(frame).all() else ''})")
    return frame


class FramesDigest:
    """sha256 over frames' shape, dtype and bytes, in order, then their count: the identity of in-memory frames."""

    def __init__(self, first: np.ndarray):
        self.sha = hashlib.sha256(f"rdengine frames {list(first.shape)} {first.dtype}\n".encode())
        self.count = 0

    def update(self, frame: np.ndarray) -> None:
        self.sha.update(np.ascontiguousarray(frame).data)
        self.count += 1

    def hexdigest(self) -> str:
        digest = self.sha.copy()
        digest.update(f"\n{self.count} frames".encode())
        return digest.hexdigest()


def check_size(frame: np.ndarray, first: np.ndarray, index: int) -> None:
    if frame.shape != first.shape or frame.dtype != first.dtype:
        raise InputError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]} {frame.dtype}, but frame 0 is "
                         f"{first.shape[1]}x{first.shape[0]} {first.dtype}: frames must share one size and type")


class FrameSequence(FrameSource):
    """Frames readable by index (``frames[i]``): a numpy array ``[T, H, W, 3]`` or any array with
    ``shape``, or a list of arrays or PIL images. ``fps`` default 24. ``identity``: the digest if
    known (a spool computed it), else computed when first asked."""

    spool_folder: Path | None = None  # the folder ``spool_frames`` wrote the frames to (theirs to remove)

    def __init__(self, frames: Sequence | Any, fps: float | None = None, identity: str | None = None,
                 origin: str = "in memory"):
        self.items = frames
        self.count = int(frames.shape[0]) if hasattr(frames, "shape") else len(frames)
        if not self.count:
            raise InputError("no frames given (an empty sequence)")
        self.first = as_frame(frames[0], 0)
        self.report = DecodeReport()
        self._identity = identity
        height, width = self.first.shape[:2]
        rate = float(fps) if fps else DEFAULT_FPS
        rate_note = "" if fps else " (default: set fps to change)"
        self.info = SourceInfo(path=IN_MEMORY_NAME, kind=KIND, width=width, height=height, fps=rate,
                               frames_estimate=self.count, frame_numbers=None,
                               description=f"{self.count} frames {origin} ({self.first.dtype} {width}x{height}), "
                                           f"{rate:g} fps{rate_note}")

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as an RGB array, checked against the first frame."""
        frame = as_frame(self.items[index], index)
        check_size(frame, self.first, index)
        return frame

    def frames(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
        """Frames ``start, start + step, ...`` (``count`` at most)."""
        check_range(start, count, step)
        report = self.report = DecodeReport(expected=self.count)
        indices = range(start, self.count, step)[:count]
        for index in indices:
            frame = self.read(index)
            report.frames_read = index + 1
            report.decoded += 1
            yield frame
            del frame
        report.reached_end = not indices or indices[-1] + step >= self.count

    def identity(self) -> str:
        """``FramesDigest`` of every frame (computed once)."""
        if self._identity is None:
            digest = FramesDigest(self.first)
            for index in range(self.count):
                digest.update(self.read(index))
            self._identity = digest.hexdigest()
        return self._identity

    def files(self) -> list[Path]:
        return []


def spool_frames(frames: Iterable, folder: Path, fps: float | None = None) -> FrameSequence:
    """Read ``frames`` (an iterator: read once, one frame at a time) into a lossless Zarr array
    in a new folder under ``folder`` (Blosc-compressed, one chunk per frame) and serve it."""
    import zarr
    from zarr.codecs import BloscCodec

    iterator = iter(frames)
    item = next(iterator, None)
    if item is None:
        raise InputError("no frames given (the iterator yielded none)")
    first = as_frame(item, 0)
    folder.mkdir(parents=True, exist_ok=True)
    spool = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=folder)) / "frames.zarr"
    array = zarr.create_array(store=str(spool), shape=(0, *first.shape), chunks=(1, *first.shape),
                              dtype=first.dtype, compressors=BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"))
    digest = FramesDigest(first)
    for index, item in enumerate(chain([first], iterator)):
        frame = as_frame(item, index)
        check_size(frame, first, index)
        digest.update(frame)
        array.resize((index + 1, *first.shape))
        array[index] = frame
        del frame, item  # only the first frame is held beyond this one
    source = FrameSequence(array, fps, identity=digest.hexdigest(), origin=f"from an iterator (spooled to {spool})")
    source.spool_folder = spool.parent
    return source


def open_frames(given: Any, *, stream: int | None = None, fps: float | None = None,
                spool_folder: Path | None = None) -> FrameSource:
    """A ``FrameSource`` for what a Python caller passes: a path (``open_input``: a video file or an
    image sequence), an array ``[T, H, W, 3]``, a list or tuple of frames, or an iterable of frames
    (spooled under ``spool_folder``)."""
    from . import open_input

    if isinstance(given, (str, os.PathLike)):
        return open_input(os.fspath(given), stream=stream, fps=fps)
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be positive (got {fps}) for frames given in memory")
    if stream is not None:
        raise InputError(f"stream={stream} applies to video files, not to frames given in memory")
    if hasattr(given, "shape") and hasattr(given, "__getitem__"):
        if len(given.shape) != 4 or given.shape[-1] != 3:
            raise InputError(f"a frame array must be [T, H, W, 3] (RGB), got shape {list(given.shape)}")
        return FrameSequence(given, fps)
    if isinstance(given, (list, tuple)):
        return FrameSequence(given, fps)
    if isinstance(given, Iterable):
        if spool_folder is None:
            raise InputError("an iterator of frames needs a folder to spool its frames to")
        return spool_frames(given, spool_folder, fps)
    raise InputError(f"cannot read frames from a {type(given).__name__}: give a path (video file or image sequence), "
                     "an array [T, H, W, 3], a list of frames or PIL images, or an iterator of frames")

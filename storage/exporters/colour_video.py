"""``mp4`` and ``sbs``: colourized depth as H.264 video, alone or to the right of the RGB frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from . import partial_path
from .base import Units, WholeFileExporter

VFR_TIME_BASE = Fraction(1, 90000)  # time stamps of a variable-rate output (the MPEG clock; matroska keeps ms)


def colour_table(name: str) -> np.ndarray:
    """``uint8 [256, 3]`` lookup table of matplotlib colormap ``name``."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap '{name}'") from None
    return (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def colourize(depth: np.ndarray, lo: float, hi: float, table: np.ndarray) -> np.ndarray:
    """``[n, H, W]`` depth -> ``uint8 [n, H, W, 3]``, range ``[lo, hi]`` over the table."""
    x = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return table[np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)]


class ColourVideoExporter(WholeFileExporter):
    """Colourized depth as H.264 mp4; with ``side_by_side`` the RGB frame goes on the left (redone whole).
    ``times``: the frames' times in seconds for a variable-rate source (see ``VideoWriter``)."""

    fmt = "mp4"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], lo: float, hi: float, colormap: str,
                 side_by_side: bool, units: Units | None = None, key: str = "", times: Sequence[float] | None = None):
        self.fmt = "sbs" if side_by_side else "mp4"
        super().__init__(path, units, key)
        self.lo, self.hi, self.sbs = lo, hi, side_by_side
        self.needs_rgb = side_by_side
        self.table = colour_table(colormap)
        self.tmp = partial_path(path)
        h, w = size
        self.writer = None if self.complete else VideoWriter(self.tmp, fps, w * (2 if side_by_side else 1), h,
                                                             times=times)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        self._check_order(first, len(depth))
        frames = colourize(depth, self.lo, self.hi, self.table)
        if self.sbs:
            frames = np.concatenate([rgb, frames], axis=2)
        self.writer.write(frames)

    def close(self) -> None:
        if self.complete:
            return
        self.writer.close()
        self._publish(self.tmp)


class VideoWriter:
    """Encode ``uint8 [B, H, W, 3]`` RGB batches to an H.264 mp4 (even sizes are padded).

    Other codecs: ``codec``, ``pix_fmt`` (the stream's), ``frame_format`` (the arrays'
    PyAV format, e.g. ``gray16le`` for ``uint16 [B, H, W]``), ``options`` (replace the
    H.264 ones), ``container_format`` and ``metadata`` (container tags); ``even=False``
    keeps odd sizes for codecs without chroma subsampling. ``times``: each frame's time in
    seconds (a variable-rate source): frames get those time stamps (from the first's, at
    ``VFR_TIME_BASE``), so the video keeps sync with its source; without, frame ``i`` is
    shown at ``i / fps``.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 18,
                 codec: str = "libx264", pix_fmt: str = "yuv420p", frame_format: str = "rgb24",
                 options: dict | None = None, container_format: str | None = None, metadata: dict | None = None,
                 even: bool = True, times: Sequence[float] | None = None):
        self.path, self.frame_format, self.times, self.written = Path(path), frame_format, times, 0
        self.container = av.open(str(self.path), mode="w", format=container_format)
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = (width + width % 2, height + height % 2) if even else (width, height)
        self.stream.pix_fmt = pix_fmt
        self.stream.options = {"crf": str(crf), "preset": "medium"} if options is None else options
        if times is not None:
            self.stream.codec_context.time_base = self.stream.time_base = VFR_TIME_BASE
        self.last_pts = -1

    def write(self, frames: np.ndarray) -> None:
        h, w = self.stream.height, self.stream.width
        for rgb in frames:
            if rgb.shape[:2] != (h, w):
                pad = ((0, h - rgb.shape[0]), (0, w - rgb.shape[1])) + ((0, 0),) * (rgb.ndim - 2)
                rgb = np.pad(rgb, pad, mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=self.frame_format)
            if self.times is not None:  # strictly increasing, as encoders demand
                seconds = self.times[self.written] - self.times[0]
                self.last_pts = frame.pts = max(self.last_pts + 1, round(seconds / VFR_TIME_BASE))
                frame.time_base = VFR_TIME_BASE
            self.written += 1
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""``gray16``: the depth video as lossless 16-bit grayscale (FFV1, ``gray16le``, Matroska) for editors.

Codes are the png16 mapping (``Scale16`` over ``meaning.range``); ``NAME_depth16.scale.json``
beside the video holds the mapping and what the values are, and the container's
``COMMENT`` tag repeats the rule. One encoded stream: redone whole on a rerun (like mp4),
written as ``NAME_depth16.partial.mkv`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import scale_path
from .base import Units, WholeFileExporter
from .meaning import DepthMeaning
from .scale16 import Scale16

CODEC, PIX_FMT = "ffv1", "gray16le"


class Gray16Exporter(WholeFileExporter):
    """16-bit grayscale FFV1 video of the mapped depth; ``size`` is ``(H, W)`` (odd sizes are fine: no chroma)."""

    fmt = "gray16"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], meaning: DepthMeaning,
                 units: Units | None = None, key: str = ""):
        super().__init__(path, units, key)
        self.meaning, self.scale, self.size = meaning, Scale16.of(meaning), tuple(size)
        self.tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
        self.container = self.stream = None
        if self.complete:
            return
        self.scale.write(scale_path(path), meaning)
        self.container = av.open(str(self.tmp), mode="w", format="matroska")
        mapping = self.scale.to_dict(meaning)
        self.container.metadata["title"] = f"rdengine {meaning.quantity}, 16-bit codes"
        self.container.metadata["comment"] = json.dumps({k: mapping[k] for k in ("quantity", "min", "max", "rule")})
        self.stream = self.container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1001))
        self.stream.height, self.stream.width = self.size
        self.stream.pix_fmt = PIX_FMT

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        if tuple(depth.shape[1:]) != self.size:
            raise ValueError(f"gray16: frames of {tuple(depth.shape[1:])}, expected {self.size}")
        self._check_order(first, len(depth))
        for codes in self.scale.codes(depth, self.meaning):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(codes), format=PIX_FMT)
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        if self.complete:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        with self.tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        self._mark("done")

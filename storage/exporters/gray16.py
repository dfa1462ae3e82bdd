"""``gray16``: the depth video as lossless 16-bit grayscale (FFV1, ``gray16le``, Matroska) for editors.

Codes are the png16 mapping (``Scale16`` over ``meaning.range``); ``NAME_depth16.scale.json``
beside the video holds the mapping and what the values are, and the container's
``COMMENT`` tag repeats the rule. One encoded stream: redone whole on a rerun (like mp4),
written as ``NAME_depth16.partial.mkv`` and renamed when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from . import partial_path, scale_path
from .base import Units, WholeFileExporter
from .colour_video import VideoWriter
from .meaning import DepthMeaning
from .scale16 import Scale16

CODEC, PIX_FMT = "ffv1", "gray16le"


class Gray16Exporter(WholeFileExporter):
    """16-bit grayscale FFV1 video of the mapped depth; ``size`` is ``(H, W)`` (odd sizes are fine: no chroma);
    ``times``: the frames' times in seconds for a variable-rate source (see ``VideoWriter``)."""

    fmt = "gray16"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], meaning: DepthMeaning,
                 units: Units | None = None, key: str = "", times: Sequence[float] | None = None):
        super().__init__(path, units, key)
        self.meaning, self.scale, self.size = meaning, Scale16.of(meaning), tuple(size)
        self.tmp = partial_path(path)
        self.writer = None
        if self.complete:
            return
        self.scale.write(scale_path(path), meaning)
        mapping = self.scale.to_dict(meaning)
        metadata = {"title": f"rdengine {meaning.quantity}, 16-bit codes",
                    "comment": json.dumps({k: mapping[k] for k in ("quantity", "min", "max", "rule")})}
        h, w = self.size
        self.writer = VideoWriter(self.tmp, fps, w, h, codec=CODEC, pix_fmt=PIX_FMT, frame_format=PIX_FMT,
                                  options={}, container_format="matroska", metadata=metadata, even=False,
                                  times=times)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        if tuple(depth.shape[1:]) != self.size:
            raise ValueError(f"gray16: frames of {tuple(depth.shape[1:])}, expected {self.size}")
        self._check_order(first, len(depth))
        self.writer.write(self.scale.codes(depth, self.meaning, first))

    def close(self) -> None:
        if not self.complete:
            self.writer.close()
            self._publish(self.tmp)

"""``png16``: one 16-bit grayscale PNG per frame, with ``scale.json`` mapping values back to depth."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .. import layout
from .base import Exporter, Units, atomic_write_text


class Png16Exporter(Exporter):
    """One 16-bit grayscale PNG per frame; ``scale.json`` maps 0..65535 back to depth (resumable by chunk)."""

    fmt = "png16"

    def __init__(self, folder: Path, name: str, lo: float, hi: float, units: Units | None = None, key: str = "",
                 frames: int | None = None):
        super().__init__(folder, units, key)
        self.folder, self.name, self.lo, self.hi = folder, name, lo, hi
        if self.complete:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if frames is not None:  # frames of an earlier, longer run (e.g. before --overwrite) are not ours
            for old in folder.glob(f"{name}_*.png"):
                index = old.stem[len(name) + 1:]
                if index.isdigit() and int(index) >= frames:
                    old.unlink()
        atomic_write_text(folder / "scale.json", json.dumps(
            {"min": lo, "max": hi, "rule": "depth = min + value / 65535 * (max - min)"}))

    def frame_path(self, index: int) -> Path:
        return self.folder / f"{self.name}_{index:06d}.png"

    def needs(self, first: int) -> bool:
        if self.complete:
            return False
        return not (self.chunk_done(first) and self.frame_path(first).exists())

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        values = np.clip(np.rint((depth - self.lo) / span * 65535), 0, 65535).astype(np.uint16)
        for i, frame in enumerate(values):
            path = self.frame_path(first + i)
            tmp = path.with_name(f".{path.stem}.tmp.png")
            Image.fromarray(frame).save(tmp)
            os.replace(tmp, path)
        self._mark(layout.chunk_unit(first))

    def close(self) -> None:
        if not self.complete:
            self._mark("done")


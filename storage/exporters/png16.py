"""``png16``: one 16-bit grayscale PNG per frame, with ``scale.json`` mapping codes back to values."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import scale_path
from .base import DEFAULT_TEMPLATE, FrameFilesExporter, Units
from .ledger import Ledger
from .meaning import DepthMeaning
from .scale16 import Scale16


class Png16Exporter(FrameFilesExporter):
    """One 16-bit grayscale PNG per frame, ``png16/NAME_NNNNNN.png`` by frame number (``template``; resumable
    by chunk).

    Codes 0..65535 span ``meaning.range`` linearly (``Scale16``); ``scale.json`` in the
    folder holds the mapping and what the values are.
    """

    fmt = "png16"
    ext = ".png"

    def __init__(self, folder: Path, name: str, meaning: DepthMeaning, units: Units | None = None, key: str = "",
                 frames: int | None = None, numbers: Sequence[int] | None = None, tidy: bool = True,
                 template: str = DEFAULT_TEMPLATE, ledger: Ledger | None = None):
        super().__init__(folder, name, units, key, frames, numbers, tidy, template, ledger)
        self.meaning, self.scale = meaning, Scale16.of(meaning)
        if not self.complete and tidy:
            self.scale.write(scale_path(folder), meaning)

    def companions(self) -> list[Path]:
        return [scale_path(self.folder)]

    def write_frame(self, tmp: Path, index: int, number: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        Image.fromarray(self.scale.codes(depth, self.meaning)).save(tmp, format="PNG")

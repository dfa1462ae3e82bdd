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

    Codes 0..65535 span the range of the frame's shot linearly (``Scale16`` of
    ``meaning.at(index)``); ``scale.json`` in the folder (``write_scales``) holds every shot's
    mapping and what the values are.
    """

    fmt = "png16"
    ext = ".png"

    def __init__(self, folder: Path, name: str, meaning: DepthMeaning, units: Units | None = None, key: str = "",
                 frames: int | None = None, numbers: Sequence[int] | None = None, tidy: bool = True,
                 template: str = DEFAULT_TEMPLATE, ledger: Ledger | None = None):
        super().__init__(folder, name, units, key, frames, numbers, tidy, template, ledger)
        self.meaning = meaning

    def companions(self) -> list[Path]:
        return [scale_path(self.folder)]

    def write_frame(self, tmp: Path, index: int, number: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        meaning = self.meaning.at(index)
        Image.fromarray(Scale16.of(meaning).codes(depth, meaning)).save(tmp, format="PNG")


def write_scales(folder: Path, meaning: DepthMeaning) -> None:
    """``scale.json`` of a png16 folder: the mapping of one shot, or of each shot (``shots``)."""
    Scale16.of(meaning).write(scale_path(folder), meaning, per_shot=True)

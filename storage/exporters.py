"""Exporters: write a depth video ``float32 [T, H, W]`` as npy, 16-bit PNGs, colour or side-by-side mp4.

Every exporter takes depth in time chunks (``write(first, depth, rgb)``) so memory stays
bounded; files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .video import VideoWriter

COLOUR_FORMATS = ("mp4", "sbs")


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


class NpyExporter:
    """``float32 [T, H, W]`` .npy written chunk by chunk through a memory map."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        self.array[first:first + len(depth)] = depth

    def close(self) -> None:
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)


class Png16Exporter:
    """One 16-bit grayscale PNG per frame; ``scale.json`` maps 0..65535 back to depth."""

    def __init__(self, folder: Path, name: str, lo: float, hi: float):
        self.folder, self.name, self.lo, self.hi = folder, name, lo, hi
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scale.json").write_text(json.dumps(
            {"min": lo, "max": hi, "rule": "depth = min + value / 65535 * (max - min)"}))

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        values = np.clip(np.rint((depth - self.lo) / span * 65535), 0, 65535).astype(np.uint16)
        for i, frame in enumerate(values):
            path = self.folder / f"{self.name}_{first + i:06d}.png"
            Image.fromarray(frame).save(path.with_suffix(".tmp.png"))
            os.replace(path.with_suffix(".tmp.png"), path)

    def close(self) -> None:
        pass


class ColourVideoExporter:
    """Colourized depth as H.264 mp4; with ``side_by_side`` the RGB frame goes on the left."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], lo: float, hi: float, colormap: str,
                 side_by_side: bool):
        self.path, self.lo, self.hi, self.sbs = path, lo, hi, side_by_side
        self.table = colour_table(colormap)
        self.tmp = path.with_name(path.stem + ".partial.mp4")
        h, w = size
        self.writer = VideoWriter(self.tmp, fps, w * (2 if side_by_side else 1), h)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        frames = colourize(depth, self.lo, self.hi, self.table)
        if self.sbs:
            frames = np.concatenate([rgb, frames], axis=2)
        self.writer.write(frames)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def resize_rgb(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [n, h, w, 3]`` -> ``[n, H, W, 3]`` (bilinear; display only)."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])

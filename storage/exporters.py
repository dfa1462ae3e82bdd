"""Exporters: write a depth video ``float32 [T, H, W]`` as npy, 16-bit PNGs, colour or side-by-side mp4.

Every exporter takes depth in time chunks (``write(first, depth, rgb)``) so memory stays
bounded; files are written under temporary names and renamed when complete.

Resumable exports: an exporter gets a ``Units`` (completion records, e.g. the run store's
``_units/export``) and a ``key`` naming its parameters. ``npy`` and ``png16`` record each
time chunk after its bytes are written (the npy memory map is flushed first) and skip
recorded chunks on a rerun; colour videos are redone whole when not complete. A final
``<fmt>-<key>-done`` record is written only after the output sits under its final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

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


class Units(Protocol):
    """Completion records an exporter uses (a run store stage)."""

    def is_done(self, unit: str) -> bool: ...

    def mark_done(self, unit: str) -> None: ...

    def clear(self, prefix: str) -> None: ...


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Exporter:
    """Base: ``needs(first)`` says whether chunk ``first`` must be written on this run."""

    fmt = "?"

    def __init__(self, path: Path, units: Units | None, key: str):
        self.path, self.units, self.key = path, units, key
        self.prefix = f"{self.fmt}-{key}-"
        self.complete = bool(units and units.is_done(self.prefix + "done") and path.exists())

    def needs(self, first: int) -> bool:
        return not self.complete

    def _mark(self, suffix: str) -> None:
        if self.units is not None:
            self.units.mark_done(self.prefix + suffix)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NpyExporter(Exporter):
    """``float32 [T, H, W]`` .npy written chunk by chunk with positioned writes (resumable by chunk).

    Plain ``pwrite`` rather than a memory map: mapped pages would count toward the process's
    resident memory and grow it with the video length.
    """

    fmt = "npy"

    def __init__(self, path: Path, shape: tuple[int, int, int], units: Units | None = None, key: str = "",
                 chunk: int = 8):
        super().__init__(path, units, key)
        self.tmp = path.with_name(path.name + ".partial")
        self.frame_bytes = int(np.prod(shape[1:])) * 4
        self.fd: int | None = None
        if self.complete:
            return
        offset = self._data_offset(self.tmp, shape) if self.tmp.exists() else None
        if offset is None:
            if units is not None:
                units.clear(self.prefix)  # no (usable) partial file: its chunk records are void
            offset = self._create(self.tmp, shape)
        self.offset = offset
        self.fd = os.open(self.tmp, os.O_RDWR)

    @staticmethod
    def _data_offset(path: Path, shape: tuple[int, ...]) -> int | None:
        """Byte offset of the data in an existing npy of ``shape`` float32, or None if it is not one."""
        try:
            with path.open("rb") as f:
                if np.lib.format.read_magic(f) != (1, 0):
                    return None
                found, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                offset = f.tell()
        except (OSError, ValueError):
            return None
        size = offset + int(np.prod(shape)) * 4
        ok = found == tuple(shape) and not fortran and dtype == np.float32 and path.stat().st_size == size
        return offset if ok else None

    @staticmethod
    def _create(path: Path, shape: tuple[int, ...]) -> int:
        """A zero-filled npy with its blocks allocated up front (a full disk fails here); returns the data offset."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": tuple(shape)}
        with path.open("wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            offset = f.tell()
            size = offset + int(np.prod(shape)) * 4
            if hasattr(os, "posix_fallocate") and size > offset:
                os.posix_fallocate(f.fileno(), 0, size)
            else:
                f.truncate(size)
        return offset

    def needs(self, first: int) -> bool:
        return not self.complete and not (self.units and self.units.is_done(f"{self.prefix}c{first:07d}"))

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
        written = os.pwrite(self.fd, data, self.offset + first * self.frame_bytes)
        if written != len(data):
            raise OSError(f"short write to {self.tmp}")
        self._mark(f"c{first:07d}")

    def close(self) -> None:
        if self.complete:
            return
        os.fsync(self.fd)
        os.close(self.fd)
        os.replace(self.tmp, self.path)
        self._mark("done")


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
        return not (self.units and self.units.is_done(f"{self.prefix}c{first:07d}")
                    and self.frame_path(first).exists())

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        values = np.clip(np.rint((depth - self.lo) / span * 65535), 0, 65535).astype(np.uint16)
        for i, frame in enumerate(values):
            path = self.frame_path(first + i)
            tmp = path.with_name(f".{path.stem}.tmp.png")
            Image.fromarray(frame).save(tmp)
            os.replace(tmp, path)
        self._mark(f"c{first:07d}")

    def close(self) -> None:
        if not self.complete:
            self._mark("done")


class ColourVideoExporter(Exporter):
    """Colourized depth as H.264 mp4; with ``side_by_side`` the RGB frame goes on the left (redone whole)."""

    fmt = "mp4"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], lo: float, hi: float, colormap: str,
                 side_by_side: bool, units: Units | None = None, key: str = ""):
        self.fmt = "sbs" if side_by_side else "mp4"
        super().__init__(path, units, key)
        self.lo, self.hi, self.sbs = lo, hi, side_by_side
        self.table = colour_table(colormap)
        self.tmp = path.with_name(path.stem + ".partial.mp4")
        h, w = size
        self.writer = None if self.complete else VideoWriter(self.tmp, fps, w * (2 if side_by_side else 1), h)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        frames = colourize(depth, self.lo, self.hi, self.table)
        if self.sbs:
            frames = np.concatenate([rgb, frames], axis=2)
        self.writer.write(frames)

    def close(self) -> None:
        if self.complete:
            return
        self.writer.close()
        with self.tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        self._mark("done")


def resize_rgb(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [n, h, w, 3]`` -> ``[n, H, W, 3]`` (bilinear; display only)."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])

"""``npy``: the whole depth video as one ``float32 [T, H, W]`` .npy, written chunk by chunk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import layout
from ..files import publish
from . import partial_path
from .base import Exporter, Units
from .meaning import DepthMeaning, to_output_values


class NpyExporter(Exporter):
    """``float32 [T, H, W]`` .npy written chunk by chunk with positioned writes (resumable by chunk).

    Plain ``pwrite`` rather than a memory map: mapped pages would count toward the process's
    resident memory and grow it with the video length. ``meaning`` (optional) says which
    values to write (``to_output_values``); without it the run's values are written as they are.
    """

    fmt = "npy"

    def __init__(self, path: Path, shape: tuple[int, int, int], units: Units | None = None, key: str = "",
                 chunk: int = 8, meaning: DepthMeaning | None = None, tidy: bool = True):
        super().__init__(path, units, key)
        self.meaning = meaning
        self.tmp = partial_path(path)
        self.frame_bytes = int(np.prod(shape[1:])) * 4
        self.fd: int | None = None
        if self.complete:
            return
        offset = self._data_offset(self.tmp, shape) if self.tmp.exists() else None
        if offset is None and not tidy:
            raise RuntimeError(f"{self.tmp} is missing or not a {shape} float32 npy: the run's process makes it")
        if offset is None:
            if units is not None:
                units.clear(self.unit(""))  # no (usable) partial file: its chunk records are void
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
        return not self.complete and not self.chunk_done(first)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        values = depth if self.meaning is None else to_output_values(depth, self.meaning, first)
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        written = os.pwrite(self.fd, data, self.offset + first * self.frame_bytes)
        if written != len(data):
            raise OSError(f"short write to {self.tmp}")
        self._mark(layout.chunk_unit(first))

    def close(self) -> None:
        if self.complete:
            return
        os.close(self.fd)
        publish(self.tmp, self.path)
        self._mark("done")

    def release(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None


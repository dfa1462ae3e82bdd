"""``npz``: the whole depth video as one compressed ``.npz``, streamed chunk by chunk.

Members (``np.load(path)[key]``): ``depth`` ``float32 [T, H, W]``; ``frames`` ``int64 [T]``
(frame numbers); ``fps`` (0-d float64, NaN if unknown); ``kind`` (0-d string: ``inverse``
or ``depth``, the ``--output`` choice); the ``DepthMeaning`` fields ``quantity``, ``near``
(0-d strings), ``affine_invariant``, ``metric`` (0-d bool), ``range``, ``inverse_range``
(``float64 [2]``), ``normalized_to`` (``float64 [2]``, NaN pair if none), ``shift`` (0-d
float64, NaN for inverse depth), ``to_inverse_depth``,
``notes`` and ``meaning`` (the whole meaning as JSON); all load without pickle.

Memory stays at one chunk: ``depth.npy`` is written into the zip through a deflate
stream (npy header first, then each chunk's bytes). Being one compressed stream it is
not resumable by chunk: an unfinished npz is redone whole on a rerun (like mp4). It is
written as ``NAME_depth.partial.npz`` and renamed when complete.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from . import partial_path
from .base import Units, WholeFileExporter
from .meaning import OUTPUT_KINDS, DepthMeaning, to_output_values


def _npy_bytes(value: np.ndarray) -> bytes:
    """A small array as the bytes of an ``.npy`` file."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
    return buf.getvalue()


def meaning_members(meaning: DepthMeaning) -> dict[str, np.ndarray]:
    """``DepthMeaning`` as npz members (no pickles)."""
    nan2 = np.array([np.nan, np.nan])
    return {
        "kind": np.array(next(kind for kind, quantity in OUTPUT_KINDS.items() if quantity == meaning.quantity)),
        "quantity": np.array(meaning.quantity),
        "near": np.array(meaning.near),
        "affine_invariant": np.array(meaning.affine_invariant),
        "metric": np.array(meaning.metric),
        "range": np.array(meaning.range, dtype=np.float64),
        "inverse_range": np.array(meaning.inverse_range, dtype=np.float64),
        "normalized_to": nan2 if meaning.normalized_to is None else np.array(meaning.normalized_to, dtype=np.float64),
        "shift": np.array(np.nan if meaning.shift is None else meaning.shift, dtype=np.float64),
        "to_inverse_depth": np.array(meaning.to_inverse_rule()),
        "notes": np.array(meaning.notes),
        "meaning": np.array(json.dumps(meaning.to_dict())),
    }


class NpzExporter(WholeFileExporter):
    """Compressed ``.npz`` (``ZIP_DEFLATED``) streamed chunk by chunk; redone whole on a rerun.

    ``shape``: ``(T, H, W)`` of the depth written; ``numbers``: frame numbers (``None``:
    0..T-1); ``level``: deflate level (6, zlib's default, balances speed and size).
    """

    fmt = "npz"

    def __init__(self, path: Path, shape: tuple[int, int, int], meaning: DepthMeaning, units: Units | None = None,
                 key: str = "", fps: float | None = None, numbers: Sequence[int] | None = None, level: int = 6):
        super().__init__(path, units, key)
        self.shape, self.meaning, self.fps, self.numbers = tuple(int(s) for s in shape), meaning, fps, numbers
        if numbers is not None and len(numbers) != self.shape[0]:
            raise ValueError(f"{len(numbers)} frame numbers for {self.shape[0]} frames")
        self.tmp = partial_path(path)
        self.zip = self.member = None
        if self.complete:
            return
        self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level)
        self.member = self.zip.open("depth.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                  "shape": self.shape}
        np.lib.format.write_array_header_1_0(self.member, header)

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        if tuple(depth.shape[1:]) != self.shape[1:]:
            raise ValueError(f"npz: chunk of frames {tuple(depth.shape[1:])}, expected {self.shape[1:]}")
        self._check_order(first, len(depth))
        values = np.ascontiguousarray(to_output_values(depth, self.meaning, first), dtype="<f4")
        self.member.write(memoryview(values).cast("B"))

    def close(self) -> None:
        if self.complete:
            return
        if self.next_frame != self.shape[0]:
            self.abort()
            raise ValueError(f"npz: {self.next_frame} of {self.shape[0]} frames written; not closing {self.path}")
        self.member.close()
        numbers = np.arange(self.shape[0]) if self.numbers is None else np.asarray(self.numbers)
        small = {"frames": numbers.astype(np.int64),
                 "fps": np.array(np.nan if self.fps is None else float(self.fps), dtype=np.float64),
                 **meaning_members(self.meaning)}
        for key, value in small.items():
            self.zip.writestr(f"{key}.npy", _npy_bytes(value))
        self.zip.close()
        self._publish(self.tmp)

    def abort(self) -> None:
        """Drop the partial file (e.g. after an error); the next run starts it over."""
        for handle in (self.member, self.zip):
            try:
                if handle is not None:
                    handle.close()
            except (OSError, ValueError):
                pass
        self.tmp.unlink(missing_ok=True)

"""``exr``: one OpenEXR file per frame, a single ``Z`` channel, self-describing header attributes.

``exr/NAME_NNNNNN.exr`` (NNNNNN the frame number; the name follows the run's template, as
png16). The channel is named ``Z`` (the depth-compositing convention); its values are what
``meaning`` says (relative inverse depth unless relative depth was asked for), *not* the
metric camera distance a compositor's ``Z`` usually holds: the header says so.

Header attributes (besides the standard ones): ``rdengine:quantity``, ``rdengine:near``,
``rdengine:notes``, ``rdengine:toInverseDepth`` (strings), ``rdengine:affineInvariant``,
``rdengine:metric``, ``rdengine:frame`` (ints), ``rdengine:range``,
``rdengine:inverseRange``, ``rdengine:normalizedTo`` (double pairs; the last one only when
set), ``rdengine:shift`` (float, relative depth only) and ``rdengine:meaning`` (the full
``DepthMeaning`` as JSON, exact); ``framesPerSecond`` (rational) when the rate is known, and
``timeCode`` (the source's timecode of the frame) when the source has one.

``dtype="half"`` halves the files at 11 significant bits (relative error <= 2**-11 for
values above 6.1e-5 in magnitude; inverse depth crosses 0, where half falls back to
subnormal steps of 6e-8).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import OpenEXR

from ..timecode import Timecode
from .base import DEFAULT_TEMPLATE, FrameFilesExporter, Units
from .ledger import Ledger
from .meaning import DepthMeaning, to_output_values

CHANNEL = "Z"
DTYPES = {"float": np.float32, "half": np.float16}
COMPRESSIONS = {"zip": OpenEXR.ZIP_COMPRESSION, "piz": OpenEXR.PIZ_COMPRESSION, "none": OpenEXR.NO_COMPRESSION}
HALF_MAX = float(np.finfo(np.float16).max)
ATTR = "rdengine:"  # prefix of this engine's header attributes


def meaning_attributes(meaning: DepthMeaning) -> dict:
    """``DepthMeaning`` as EXR header attributes (strings, ints, double pairs, float)."""
    attrs = {
        ATTR + "quantity": meaning.quantity,
        ATTR + "near": meaning.near,
        ATTR + "affineInvariant": int(meaning.affine_invariant),
        ATTR + "metric": int(meaning.metric),
        ATTR + "range": np.array(meaning.range, dtype=np.float64),
        ATTR + "inverseRange": np.array(meaning.inverse_range, dtype=np.float64),
        ATTR + "toInverseDepth": meaning.to_inverse_rule(),
        ATTR + "notes": meaning.notes,
        ATTR + "meaning": json.dumps(meaning.to_dict()),
    }
    if meaning.normalized_to is not None:
        attrs[ATTR + "normalizedTo"] = np.array(meaning.normalized_to, dtype=np.float64)
    if meaning.shift is not None:
        attrs[ATTR + "shift"] = float(meaning.shift)
    return attrs


def exr_timecode(label: str) -> OpenEXR.TimeCode:
    """An ``HH:MM:SS:FF`` label (``;``: drop-frame) as the standard ``timeCode`` attribute."""
    code = OpenEXR.TimeCode()
    code.hours, code.minutes, code.seconds, code.frame = (int(v) for v in label.replace(";", ":").split(":"))
    code.dropFrame = ";" in label
    return code


class ExrExporter(FrameFilesExporter):
    """One EXR per frame with channel ``Z`` (resumable by chunk).

    ``dtype``: ``"float"`` (32-bit, exact; default) or ``"half"``. ``compression``:
    ``"zip"`` (lossless, default), ``"piz"`` or ``"none"``. ``numbers``: frame numbers
    (file names and ``rdengine:frame``), ``None`` for 0, 1, ... ``fps``: written as the
    standard ``framesPerSecond`` attribute when given. ``timecode``: the source's (``Timecode``),
    written as each frame's standard ``timeCode`` attribute (the label of its frame number).
    ``template``, ``ledger``: see ``FrameFilesExporter``.
    """

    fmt = "exr"
    ext = ".exr"

    def __init__(self, folder: Path, name: str, meaning: DepthMeaning, units: Units | None = None, key: str = "",
                 frames: int | None = None, numbers: Sequence[int] | None = None, dtype: str = "float",
                 compression: str = "zip", fps: float | None = None, tidy: bool = True,
                 timecode: Timecode | None = None, template: str = DEFAULT_TEMPLATE, ledger: Ledger | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"unknown EXR dtype '{dtype}' (choose from {', '.join(DTYPES)})")
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown EXR compression '{compression}' (choose from {', '.join(COMPRESSIONS)})")
        if dtype == "half" and max(abs(v) for v in meaning.range) > HALF_MAX:
            raise ValueError(f"values up to {max(abs(v) for v in meaning.range):g} do not fit EXR half "
                             f"(max {HALF_MAX:g}); use dtype float")
        super().__init__(folder, name, units, key, frames, numbers, tidy, template, ledger)
        self.meaning, self.dtype, self.timecode = meaning, DTYPES[dtype], timecode
        self.header = {"compression": COMPRESSIONS[compression], "type": OpenEXR.scanlineimage}
        if fps:
            self.header["framesPerSecond"] = Fraction(fps).limit_denominator(1001)

    def write_frame(self, tmp: Path, index: int, number: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        meaning = self.meaning.at(index)  # its shot's
        values = np.ascontiguousarray(to_output_values(depth, meaning).astype(self.dtype, copy=False))
        header = {**self.header, **meaning_attributes(meaning), ATTR + "frame": int(number)}
        if self.timecode is not None:
            header["timeCode"] = exr_timecode(self.timecode.at(number))
        with OpenEXR.File(header, {CHANNEL: values}) as f:
            f.write(str(tmp))

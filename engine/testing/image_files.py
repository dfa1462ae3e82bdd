"""Single image files written by their own libraries (FFmpeg encoders, OpenEXR), for tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_image(path: Path, array: np.ndarray, codec: str, src: str, pix_fmt: str) -> Path:
    """One image file written by FFmpeg's ``codec`` encoder (16-bit png, dpx) from ``array`` in format ``src``."""
    import av

    cc = av.CodecContext.create(codec, "w")
    cc.height, cc.width = array.shape[:2]
    cc.pix_fmt, cc.time_base = pix_fmt, Fraction(1, 24)
    frame = av.VideoFrame.from_ndarray(array, format=src).reformat(format=pix_fmt)
    path.write_bytes(b"".join(bytes(p) for p in cc.encode(frame) + cc.encode(None)))
    return path


def write_exr(path: Path, channels: dict, **header) -> Path:
    """A scanline EXR (ZIP) of ``channels`` (name -> array), with extra ``header`` attributes."""
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **header},
                 channels).write(str(path))
    return path

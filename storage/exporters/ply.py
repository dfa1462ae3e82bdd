"""``ply``: coloured point clouds of every Nth frame, back-projected through a pinhole camera.

``ply/NAME_NNNNNN.ply`` (frame number, as png16), binary little-endian, one ``vertex``
element with ``float x, y, z`` and ``uchar red, green, blue`` (the frame's RGB).

Geometry: each pixel centre ``(u + 0.5, v + 0.5)`` at relative depth ``z`` goes to
``x = (u + 0.5 - cx) * z / f``, ``y = (v + 0.5 - cy) * z / f``, ``z``, in the OpenCV camera
frame (x right, y down, z forward), principal point ``(cx, cy) = (W / 2, H / 2)``. ``z`` is
the **relative depth** of ``meaning`` (``meaning.as_depth()``: the ``--output depth`` rule,
whatever was asked for the other outputs): affine-invariant geometry, up to an unknown
scale *and* an unknown shift of the inverse depth, so not metric, and planes may come out
bent. Each file's comments say so, with its intrinsics.

Defaults: every 10th frame (``every=10``; 3 clouds per second at 30 fps, a tenth of the
disk of every frame), every pixel (``stride=1``: point ``(u, v)`` is pixel ``(u, v)``, as in
the other outputs), focal length from a 60 degree horizontal field of view (a typical
phone or action camera main lens is 60-75 degrees) unless ``focal`` (pixels, at the
exported size) is given. Resumable by chunk.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from plyfile import PlyData, PlyElement

from .base import DEFAULT_TEMPLATE, FrameFilesExporter, Units
from .ledger import Ledger
from .meaning import DepthMeaning, to_output_values

DEFAULT_EVERY = 10
DEFAULT_STRIDE = 1
DEFAULT_FOV = 60.0  # degrees, horizontal
VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length in pixels of a pinhole with horizontal field of view ``fov_deg`` over ``width`` pixels."""
    if not 0 < fov_deg < 180:  # NaN fails too
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    return width / 2 / math.tan(math.radians(fov_deg) / 2)


def back_project(z: np.ndarray, focal: float, stride: int = 1) -> np.ndarray:
    """``[H, W]`` depth -> ``float32 [N, 3]`` points (pixels ``[::stride, ::stride]``, row-major)."""
    h, w = z.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride].astype(np.float32)
    zs = z[::stride, ::stride].astype(np.float32)
    x = (u + 0.5 - w / 2) * zs / focal
    y = (v + 0.5 - h / 2) * zs / focal
    return np.stack([x, y, zs], axis=-1).reshape(-1, 3)


class PlyExporter(FrameFilesExporter):
    """Point cloud of every ``every``-th frame (positions 0, every, 2 * every, ...); needs the RGB frames.

    ``size``: ``(H, W)`` of the exported depth; ``focal`` (pixels) wins over ``fov``
    (degrees, horizontal). ``stride`` keeps every ``stride``-th pixel in both directions.
    """

    fmt = "ply"
    ext = ".ply"
    needs_rgb = True

    def __init__(self, folder: Path, name: str, meaning: DepthMeaning, size: tuple[int, int],
                 units: Units | None = None, key: str = "", frames: int | None = None,
                 numbers: Sequence[int] | None = None, every: int = DEFAULT_EVERY, stride: int = DEFAULT_STRIDE,
                 focal: float | None = None, fov: float = DEFAULT_FOV, tidy: bool = True,
                 template: str = DEFAULT_TEMPLATE, ledger: Ledger | None = None):
        if every < 1 or stride < 1:
            raise ValueError("ply: every and stride must be >= 1")
        if focal is not None and not (math.isfinite(focal) and focal > 0):
            raise ValueError(f"ply: focal length must be a finite number of pixels > 0, got {focal}")
        self.every, self.stride = int(every), int(stride)
        super().__init__(folder, name, units, key, frames, numbers, tidy, template, ledger)
        self.meaning = meaning.as_depth()
        self.size = tuple(size)
        self.focal = float(focal) if focal is not None else focal_from_fov(self.size[1], fov)
        self.fov_note = "given focal length" if focal is not None else f"{fov:g} deg horizontal field of view"

    def selected(self, index: int) -> bool:
        return index % self.every == 0

    def comments(self, index: int, number: int) -> list[str]:
        m, (h, w) = self.meaning.at(index), self.size
        return [
            "rdengine point cloud: relative (affine-invariant) geometry up to unknown scale and shift, NOT metric",
            f"frame {number}",
            f"z = {m.quantity} = 1 / (inverse - {m.inverse_range[0]!r} + {m.shift!r}), "
            f"inverse = relative inverse depth (range {m.inverse_range[0]!r} .. {m.inverse_range[1]!r})",
            f"pinhole fx = fy = {self.focal!r} px ({self.fov_note}), cx = {w / 2!r}, cy = {h / 2!r}, "
            f"image {w}x{h}",
            "x = (u + 0.5 - cx) * z / f, y = (v + 0.5 - cy) * z / f; OpenCV camera axes: x right, y down, z forward",
            f"pixel stride {self.stride}; colours: the input RGB frame",
        ]

    def write_frame(self, tmp: Path, index: int, number: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        if tuple(depth.shape) != self.size or rgb.shape[:2] != self.size:
            raise ValueError(f"ply: depth {depth.shape} / rgb {rgb.shape[:2]}, expected {self.size}")
        points = back_project(to_output_values(depth, self.meaning, index), self.focal, self.stride)
        colours = rgb[::self.stride, ::self.stride].reshape(-1, 3)
        vertex = np.empty(len(points), dtype=VERTEX)
        vertex["x"], vertex["y"], vertex["z"] = points.T
        vertex["red"], vertex["green"], vertex["blue"] = colours.T
        PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<",
                comments=self.comments(index, number)).write(str(tmp))

"""The contact sheet: one PNG tile per shot, RGB beside colourized depth of its middle frame, in
pages of at most ``PAGE_SHOTS`` tiles (``NAME_shots.png``, ``NAME_shots_p2.png``, ...), so a film of
a thousand shots gives pages of a fixed size and holds one page's thumbnails at a time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ...storage.files import replace_atomically
from ...storage.inputs.source import ArrayView, FrameView
from .detector import shrunk_size
from .model import Shot


def thumbnail(frame: np.ndarray | FrameView, max_side: int = 160) -> np.ndarray:
    """``frame`` shrunk so its longer side is at most ``max_side`` px (aspect kept, never enlarged).

    RGB (an ``[H, W, 3]`` array or a ``FrameView``, uint8, uint16 or float in [0, 1]) ->
    ``uint8 [h, w, 3]``, antialiased bilinear, read in bands of rows (an 8K frame is never
    converted whole); depth ``float [H, W]`` -> float32 ``[h, w]``, bilinear."""
    from PIL import Image

    from ..latents import display_frame

    h, w = frame.shape[:2]
    size = shrunk_size(h, w, max_side)
    if len(frame.shape) == 2:
        depth = np.ascontiguousarray(frame, dtype=np.float32)
        return depth.copy() if size == (w, h) else np.asarray(Image.fromarray(depth).resize(size, Image.BILINEAR))
    return display_frame(frame if isinstance(frame, FrameView) else ArrayView(np.asarray(frame)), size[::-1])


SHEET_PAD = 6  # px around and between tiles
SHEET_LABEL = 16  # px label band above each tile's pictures
SHEET_GAP = 2  # px between a tile's RGB and depth pictures
SHEET_BACKGROUND = (24, 24, 24)
PAGE_SHOTS = 48  # tiles per page: 4 columns x 12 rows of 160-px thumbnails, about 1318x1350 px


def sheet_layout(count: int, thumb_size: tuple[int, int], columns: int | None = None
                 ) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Contact sheet geometry: ``((width, height), [tile top-left (x, y) per shot])`` for ``count``
    tiles of RGB+depth pictures of ``thumb_size = (w, h)``, ``columns`` per row (default
    ``min(count, 4)``). A tile is ``2w + SHEET_GAP`` wide and ``SHEET_LABEL + h`` high."""
    w, h = thumb_size
    columns = max(1, min(count, columns or 4))
    rows = max(1, math.ceil(count / columns))
    tile_w, tile_h = 2 * w + SHEET_GAP, SHEET_LABEL + h
    size = (columns * tile_w + (columns + 1) * SHEET_PAD, rows * tile_h + (rows + 1) * SHEET_PAD)
    origins = [(SHEET_PAD + (k % columns) * (tile_w + SHEET_PAD), SHEET_PAD + (k // columns) * (tile_h + SHEET_PAD))
               for k in range(count)]
    return size, origins


def contact_sheet(path: str | Path, thumbnails: Sequence[tuple[np.ndarray, np.ndarray]], shots: Sequence[Shot],
                  colormap: str = "Spectral", columns: int | None = None, lo: float | None = None,
                  hi: float | None = None) -> list[tuple[int, int, int, int]]:
    """One PNG, one tile per shot: a label (shot index, frame range) above the RGB thumbnail and its
    depth colourized with ``colormap`` (the engine's mp4 colouring), of the shot's representative
    frame (``Shot.middle``). ``thumbnails[k] = (rgb uint8 [h, w, 3], depth float [h', w'])`` for
    shot ``k`` (see :func:`thumbnail`); depth is resized to the RGB thumbnail. Depth range:
    ``lo``/``hi`` when given, else each thumbnail's own finite min/max (shots are aligned each on
    its own, so their depth scales are not comparable). Layout: :func:`sheet_layout`.
    Returns each tile's RGB picture box ``(left, top, right, bottom)``.
    """
    from PIL import Image, ImageDraw, ImageFont

    from ...storage.exporters.colour_video import colour_table, colourize

    if len(thumbnails) != len(shots):
        raise ValueError(f"contact sheet needs one thumbnail per shot ({len(thumbnails)} for {len(shots)} shots)")
    if not shots:
        raise ValueError("contact sheet needs at least one shot")
    table = colour_table(colormap)
    tw = max(np.asarray(rgb).shape[1] for rgb, _ in thumbnails)
    th = max(np.asarray(rgb).shape[0] for rgb, _ in thumbnails)
    size, origins = sheet_layout(len(shots), (tw, th), columns)
    sheet = Image.new("RGB", size, SHEET_BACKGROUND)
    font = ImageFont.load_default()
    boxes = []
    for (rgb, depth), shot, (x, y) in zip(thumbnails, shots, origins):
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"shot {shot.index}: RGB thumbnail must be uint8 [h, w, 3], got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        d = np.asarray(depth, dtype=np.float32)
        if d.ndim != 2:
            raise ValueError(f"shot {shot.index}: depth thumbnail must be [h, w], got {d.shape}")
        if d.shape != (h, w):
            d = np.asarray(Image.fromarray(np.ascontiguousarray(d)).resize((w, h), Image.BILINEAR))
        finite = d[np.isfinite(d)]
        d_lo = lo if lo is not None else (float(finite.min()) if finite.size else 0.0)
        d_hi = hi if hi is not None else (float(finite.max()) if finite.size else 1.0)
        coloured = colourize(np.nan_to_num(d, nan=d_lo, posinf=d_hi, neginf=d_lo)[None], d_lo, d_hi, table)[0]
        tile = Image.new("RGB", (2 * tw + SHEET_GAP, SHEET_LABEL + th), SHEET_BACKGROUND)
        ImageDraw.Draw(tile).text((1, 2), f"shot {shot.index}  {shot.start}-{shot.stop - 1}", fill=(235, 235, 235),
                                  font=font)
        tile.paste(Image.fromarray(rgb), (0, SHEET_LABEL))
        tile.paste(Image.fromarray(coloured), (tw + SHEET_GAP, SHEET_LABEL))
        sheet.paste(tile, (x, y))
        boxes.append((x, y + SHEET_LABEL, x + w, y + SHEET_LABEL + h))
    replace_atomically(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))
    return boxes


def page_path(path: str | Path, page: int) -> Path:
    """Page ``page`` (0-based) of the contact sheet at ``path``: the first is ``path`` itself."""
    path = Path(path)
    return path if page == 0 else path.with_name(f"{path.stem}_p{page + 1}{path.suffix}")


def contact_sheets(path: str | Path, tiles: Iterable[tuple[Shot, np.ndarray, np.ndarray]], colormap: str = "Spectral",
                   per_page: int = PAGE_SHOTS) -> list[Path]:
    """The contact sheet of ``tiles`` (``(shot, rgb thumbnail, depth thumbnail)`` in shot order, see
    :func:`thumbnail`), ``per_page`` tiles a page (:func:`contact_sheet` each, :func:`page_path`
    names); each page is written once full, so only its thumbnails are held. Returns the pages."""
    pages: list[Path] = []
    shots: list[Shot] = []
    thumbnails: list[tuple[np.ndarray, np.ndarray]] = []
    for shot, rgb, depth in tiles:
        shots.append(shot)
        thumbnails.append((rgb, depth))
        if len(shots) == per_page:
            pages.append(page_path(path, len(pages)))
            contact_sheet(pages[-1], thumbnails, shots, colormap)
            shots, thumbnails = [], []
    if shots:
        pages.append(page_path(path, len(pages)))
        contact_sheet(pages[-1], thumbnails, shots, colormap)
    return pages

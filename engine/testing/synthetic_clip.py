"""Synthesize short encoded test clips with PyAV: moving shapes over a gradient."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import av
import numpy as np


def iter_synthetic_frames(frames: int, width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``uint8 [height, width, 3]`` frames, one at a time: a gradient, a drifting disc and a sliding bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0 * x], -1) * 200
    colour = rng.uniform(80, 255, size=(2, 3))
    for t in range(frames):
        img = base.copy()
        cx = width * (0.2 + 0.6 * (t / max(frames - 1, 1)))
        cy = height * (0.5 + 0.25 * np.sin(t / 7))
        img[(x - cx) ** 2 + (y - cy) ** 2 < (0.2 * min(width, height)) ** 2] = colour[0]
        bar = int((t * 3) % max(width, 1))
        img[:, bar:bar + max(width // 10, 1)] = colour[1]
        yield img.astype(np.uint8)


def synthetic_frames(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``uint8 [frames, height, width, 3]``: ``iter_synthetic_frames`` in one array."""
    return np.stack(list(iter_synthetic_frames(frames, width, height, seed)))


def synthetic_edit(shot_lengths: Sequence[int], width: int, height: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """An edit of clearly different shots: ``(uint8 [T, height, width, 3], cut frames)``.

    Shot ``k`` is :func:`synthetic_frames` with its own seed, its background recoloured
    (channel order rotated, every other shot inverted) and flipped, so consecutive shots
    differ in hue, saturation and brightness; within a shot only the shapes move.
    """
    shots, cuts, at = [], [], 0
    for k, n in enumerate(shot_lengths):
        frames = synthetic_frames(n, width, height, seed + 101 * k)
        frames = np.roll(frames, k, axis=-1)
        if k % 2:
            frames = 255 - frames[:, ::-1]
        shots.append(frames)
        if k:
            cuts.append(at)
        at += n
    return np.concatenate(shots), cuts


def encode_frames(path: str | Path, frames: Iterable[np.ndarray], fps: int = 12, codec: str = "libx264",
                  pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> Path:
    """Encode ``uint8 [H, W, 3]`` RGB frames to ``path`` (H.264 mp4 by default; ``options``: the
    encoder's, e.g. ``{"x264-params": "bframes=0"}``); returns the path."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = pix_fmt
        stream.options = options or {}
        for k, rgb in enumerate(frames):
            if k == 0:
                stream.height, stream.width = rgb.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_clip(path: str | Path, frames: int = 24, width: int = 64, height: int = 48, fps: int = 12,
               seed: int = 0, codec: str = "libx264", pix_fmt: str = "yuv420p",
               options: dict[str, str] | None = None) -> Path:
    """Encode a synthetic clip to ``path`` (H.264 mp4 by default; ``options`` as in
    ``encode_frames``); returns the path."""
    return encode_frames(path, iter_synthetic_frames(frames, width, height, seed), fps, codec, pix_fmt, options)

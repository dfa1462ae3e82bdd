"""Synthesize short encoded test clips with PyAV: moving shapes over a gradient."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def synthetic_frames(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``uint8 [frames, height, width, 3]``: a gradient, a drifting disc and a sliding bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0 * x], -1) * 200
    colour = rng.uniform(80, 255, size=(2, 3))
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        img = base.copy()
        cx = width * (0.2 + 0.6 * (t / max(frames - 1, 1)))
        cy = height * (0.5 + 0.25 * np.sin(t / 7))
        img[(x - cx) ** 2 + (y - cy) ** 2 < (0.2 * min(width, height)) ** 2] = colour[0]
        bar = int((t * 3) % max(width, 1))
        img[:, bar:bar + max(width // 10, 1)] = colour[1]
        out[t] = img.astype(np.uint8)
    return out


def write_clip(path: str | Path, frames: int = 24, width: int = 64, height: int = 48, fps: int = 12,
               seed: int = 0, codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    """Encode a synthetic clip to ``path`` (H.264 mp4 by default); returns the path."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for rgb in synthetic_frames(frames, width, height, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

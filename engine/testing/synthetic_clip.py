"""Synthesize short encoded test clips with PyAV: moving shapes over a gradient, and edits of
calm and fast shots joined by hard cuts and fades, with flashes (cut detection benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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


def fast_frames(frames: int, width: int, height: int, seed: int = 0, speed: float = 0.08) -> np.ndarray:
    """``uint8 [frames, height, width, 3]``: a textured plane in two colours of its own panning
    about ``speed`` of the frame's width per frame (and a third of that vertically), each step
    drawn anew between half and one and a half times that (jerky, as handheld action): most
    pixels change between frames."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(max(2, height // 12), max(2, width // 12))).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)[..., None] / 255
    light, dark = rng.uniform(120, 255, size=3), rng.uniform(0, 110, size=3)
    texture = field * light + (1 - field) * dark
    steps = np.cumsum(rng.uniform(0.5, 1.5, size=frames)) * speed
    return np.stack([np.roll(texture, (round(step * height / 3), round(step * width)), axis=(0, 1))
                     for step in steps]).astype(np.uint8)


@dataclass(frozen=True)
class Transition:
    """A shot change of a synthetic edit: a ``cut`` at frame ``start`` (``stop = start + 1``) or a
    ``fade`` through black over frames ``[start, stop)``; ``after_fast``: the shot before is fast."""

    kind: str
    start: int
    stop: int
    after_fast: bool


@dataclass(frozen=True)
class SyntheticEdit:
    """Frames ``uint8 [T, H, W, 3]``, the shot changes, and flashes (frames ``[start, stop)`` of a
    shot blown towards white: no shot change)."""

    frames: np.ndarray
    transitions: list[Transition]
    flashes: list[tuple[int, int]]


def edit_frames(shots: Sequence[tuple[str, int]], joins: Sequence[str], width: int, height: int, seed: int = 0,
                flashes: Sequence[tuple[int, int]] = (), fade: int = 8) -> SyntheticEdit:
    """An edit of ``shots`` (``("calm" | "fast", frames)``) joined by ``joins`` (``"cut"`` or
    ``"fade"``, one fewer than shots): calm shots are ``synthetic_edit``'s, fast ones
    ``fast_frames``; a fade darkens the last ``fade`` frames of a shot and brightens the first
    ``fade`` of the next. ``flashes``: ``(frame, length)`` of white flashes within shots."""
    if len(joins) != len(shots) - 1:
        raise ValueError(f"{len(shots)} shots need {len(shots) - 1} joins, got {len(joins)}")
    clips = []
    for k, (kind, n) in enumerate(shots):
        if kind == "fast":
            clips.append(fast_frames(n, width, height, seed + 101 * k).astype(np.float32))
        else:
            clips.append(synthetic_edit([n], width, height, seed + 101 * k)[0].astype(np.float32))
    transitions, at = [], 0
    for k, join in enumerate(joins):
        at += len(clips[k])
        after_fast = shots[k][0] == "fast"
        if join == "fade":
            ramp = np.linspace(1, 0, fade + 1, dtype=np.float32)[1:, None, None, None]
            clips[k][-fade:] *= ramp
            clips[k + 1][:fade] *= ramp[::-1]
            transitions.append(Transition("fade", at - fade, at + fade, after_fast))
        else:
            transitions.append(Transition("cut", at, at + 1, after_fast))
    frames = np.concatenate(clips)
    for start, length in flashes:
        frames[start:start + length] = 0.25 * frames[start:start + length] + 0.75 * 255
    return SyntheticEdit(np.clip(frames, 0, 255).astype(np.uint8), transitions,
                         [(start, start + length) for start, length in flashes])


def benchmark_edits(count: int, width: int, height: int, seed: int = 0) -> list[SyntheticEdit]:
    """``count`` edits of 4 to 6 shots of 16 to 40 frames each: calm or fast (half each), joined
    by hard cuts (3 in 4) or fades, a 1- or 2-frame flash inside a shot in every other edit."""
    rng = np.random.default_rng(seed)
    edits = []
    for e in range(count):
        n = int(rng.integers(4, 7))
        shots = [("fast" if rng.random() < 0.5 else "calm", int(rng.integers(16, 41))) for _ in range(n)]
        joins = ["fade" if rng.random() < 0.25 else "cut" for _ in range(n - 1)]
        flashes = []
        if e % 2:
            k = int(rng.integers(0, n))
            first = sum(length for _, length in shots[:k])
            flashes.append((first + shots[k][1] // 2, int(rng.integers(1, 3))))
        edits.append(edit_frames(shots, joins, width, height, seed=1000 * seed + 10 * e, flashes=flashes))
    return edits


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

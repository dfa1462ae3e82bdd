"""Streaming cut detection: PySceneDetect's detectors fed the frames the engine already decodes."""

from __future__ import annotations

import inspect
import math
import mmap

import numpy as np

from ...storage.inputs.source import FrameView, to_uint8


DEFAULT_METHOD = "adaptive"
DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 1.5}
"""``content``: mean HSV change between consecutive frames (0-255 scale), PySceneDetect's
default; ``adaptive``: that change over the mean of the 2 frames either side (a frame must
also change by at least ``ADAPTIVE_MIN_CONTENT``). The default method and threshold are the
best F1 of ``rdengine bench shots --accuracy`` (benchmarks/RESULTS.md): the content detector
misses a hard cut next to a fast shot (its flash filter merges every frame above threshold),
and the adaptive detector at PySceneDetect's ratio of 3 misses it after one."""
ADAPTIVE_MIN_CONTENT = 15.0
ADAPTIVE_WINDOW = 2
FLASH_FRAMES = 2  # a change that reverts within this many frames is a flash, not a cut (see CutDetector)
FLASH_SAME_SCENE = 15.0  # mean HSV change (0-255) under which the frames around a change show one scene
MIN_SHOT_SECONDS = 0.5
DETECT_SIDE = 256  # frames are downscaled to this longer side before detection, as PySceneDetect does
SAMPLE_BAND_VALUES = 1 << 22  # values read at most at once from a FrameView (see CutDetector._sampled)


def untouched_canvas(shape: tuple[int, ...]) -> np.ndarray:
    """A zero ``uint8`` array of ``shape`` whose pages become resident only where written: an
    anonymous mapping with transparent huge pages off (a 2 MiB huge page would make every
    written row pull in its 90-odd neighbours at 8K)."""
    memory = mmap.mmap(-1, max(1, math.prod(shape)))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, np.uint8).reshape(shape)


def shrunk_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` with the longer side at most ``max_side`` px (aspect kept, never enlarged)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def sampled_rows(height: int, out_height: int, most: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of at most ``most`` rows that cover every source row OpenCV's
    bilinear resize from ``height`` to ``out_height`` rows reads (rows ``floor((y + 0.5) * height
    / out_height - 0.5)`` and the next, for each output row ``y``; one row of margin either
    side). Overlapping or touching ranges are merged."""
    ranges: list[tuple[int, int]] = []
    for y in range(out_height):
        row = math.floor((y + 0.5) * height / out_height - 0.5)
        start, stop = max(0, row - 1), min(height, row + 3)
        if ranges and start <= ranges[-1][1] and stop - ranges[-1][0] <= most:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
        else:
            ranges.append((start, stop))
    return ranges


def default_min_shot(fps: float | None) -> int:
    """Shortest shot by default: 0.5 s of frames (15 at 30 fps, 12 at 24 fps; 15 if fps unknown)."""
    return max(1, round(MIN_SHOT_SECONDS * fps)) if fps and fps > 0 else 15


class CutDetector:
    """Finds hard cuts while frames stream past; PySceneDetect's ``AdaptiveDetector`` (default)
    or ``ContentDetector`` does the scoring, then a flash check drops changes that revert within
    ``flash_frames`` frames (a camera flash, an explosion: the frame after shows the scene of the
    frame before; 0 switches the check off).

    ``feed(i, rgb)`` once per frame, indices consecutive; ``cuts()`` after the last frame.
    Frames are RGB ``uint8 [H, W, 3]`` arrays of any size (gray and RGBA are accepted), or
    ``FrameView``s of any dtype (rounded to uint8). Frames whose longer side exceeds
    ``max_side`` px are first downscaled to it with OpenCV's bilinear interpolation, exactly as
    PySceneDetect's own ``SceneManager`` does by default (so its default thresholds apply as
    tuned), every frame to the size of the first one's; then converted to the BGR order
    PySceneDetect expects. Of a ``FrameView`` only the rows that downscale reads are read
    (``sampled_rows``: 4 rows in 30 at 8K), into a frame-sized canvas whose other rows are
    never touched (so never resident): the same thumbnail for a fraction of the memory and of
    the conversion.

    ``threshold``: None for :data:`DEFAULT_THRESHOLDS` of ``method``. ``min_shot``: no cut is
    reported less than this many frames after the previous one (or the first frame); None for
    :func:`default_min_shot` of ``fps``. Of two cuts closer than ``min_shot`` the first is kept. The last shot may be shorter than ``min_shot`` (a real cut near the end is kept).
    """

    METHODS = ("content", "adaptive")

    def __init__(self, method: str = DEFAULT_METHOD, threshold: float | None = None, min_shot: int | None = None,
                 fps: float | None = 25.0, max_side: int = DETECT_SIDE, flash_frames: int = FLASH_FRAMES):
        if method not in self.METHODS:
            raise ValueError(f"unknown cut detection method '{method}' (use one of {', '.join(self.METHODS)})")
        self.method = method
        self.threshold = float(DEFAULT_THRESHOLDS[method] if threshold is None else threshold)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.min_shot = default_min_shot(fps) if min_shot is None else int(min_shot)
        if self.threshold <= 0 or self.min_shot < 0 or max_side < 8:
            raise ValueError("cut detection needs threshold > 0, min_shot >= 0 and max_side >= 8")
        self.max_side = int(max_side)
        self.flash_frames = max(0, int(flash_frames))
        try:
            import cv2
            from scenedetect import detectors
        except ImportError as e:  # pragma: no cover - dependency missing
            raise ImportError("cut detection needs PySceneDetect and OpenCV: pip install scenedetect") from e
        self._cv2 = cv2
        if method == "content":
            self._detector = detectors.ContentDetector(threshold=self.threshold, min_scene_len=self.min_shot)
        else:
            self._detector = detectors.AdaptiveDetector(adaptive_threshold=self.threshold,
                                                        min_scene_len=self.min_shot,
                                                        window_width=ADAPTIVE_WINDOW,
                                                        min_content_val=ADAPTIVE_MIN_CONTENT)
        # PySceneDetect 0.7 passes FrameTimecodes to process_frame; 0.6 passed int frame numbers.
        first = next(iter(inspect.signature(self._detector.process_frame).parameters))
        self._timecodes = first != "frame_num"
        self._size: tuple[int, int] | None = None  # (width, height) fed to the detector
        self._canvas: np.ndarray | None = None  # see _sampled
        self._first: int | None = None
        self._last: int | None = None
        self._cuts: set[int] = set()  # confirmed
        self._pending: set[int] = set()  # found by PySceneDetect, waiting for the flash check
        self._recent: dict[int, np.ndarray] = {}  # HSV of the last frames fed (the flash check compares them)
        self._finished = False

    @property
    def lag(self) -> int:
        """At most this many frames pass between a cut's frame and the ``feed`` that reports it."""
        fallback = ADAPTIVE_WINDOW if self.method == "adaptive" else self.min_shot
        return int(getattr(self._detector, "event_buffer_length", fallback)) + self.flash_frames

    def describe(self) -> dict:
        """How cuts are found (for ``shots.json``)."""
        return {"method": self.method, "threshold": self.threshold, "min_shot": self.min_shot,
                "flash_frames": self.flash_frames, "detect_size": list(self._size) if self._size else None}

    def _position(self, index: int):
        if not self._timecodes:
            return index
        from scenedetect import FrameTimecode
        return FrameTimecode(index, fps=self.fps)

    def _collect(self, found, until: int | None) -> list[int]:
        """Cuts ``found`` by PySceneDetect join the pending ones; returns those confirmed now:
        pending cuts ``flash_frames`` or more frames before ``until`` (None: every one) that
        are no flash. A change at ``c`` is a flash when the frame ``flash_frames`` after it
        shows the scene of the frame before it again (mean HSV change under
        ``FLASH_SAME_SCENE``, the scale of the content detector's threshold)."""
        self._pending.update({int(getattr(c, "frame_num", c)) for c in found} - self._cuts)
        ready = sorted(c for c in self._pending if until is None or c + self.flash_frames <= until)
        self._pending.difference_update(ready)
        confirmed = [c for c in ready if not self._is_flash(c)]
        self._cuts.update(confirmed)
        return confirmed

    def _is_flash(self, cut: int) -> bool:
        before, after = self._recent.get(cut - 1), self._recent.get(cut + self.flash_frames)
        if not self.flash_frames or before is None or after is None:
            return False
        return float(np.abs(before.astype(np.int16) - after).mean()) < FLASH_SAME_SCENE

    def _remember(self, index: int, frame_bgr: np.ndarray) -> None:
        """Keep the HSV of frame ``index`` as long as the flash check may need it."""
        if not self.flash_frames:
            return
        self._recent[index] = self._cv2.cvtColor(frame_bgr, self._cv2.COLOR_BGR2HSV)
        for old in [i for i in self._recent if i < index - self.lag - 1]:
            del self._recent[old]

    def _sampled(self, view: FrameView) -> np.ndarray:
        """``uint8 [H, W, 3]`` holding the rows of ``view`` the downscale reads (others left 0)."""
        h, w = view.shape[:2]
        size = self._size or shrunk_size(h, w, self.max_side)
        if size[1] >= h:
            return to_uint8(view.array())
        if self._canvas is None or self._canvas.shape != (h, w, 3):
            self._canvas = untouched_canvas((h, w, 3))
        for start, stop in sampled_rows(h, size[1], max(1, SAMPLE_BAND_VALUES // (w * 3))):
            self._canvas[start:stop] = to_uint8(view.rows(start, stop))
        return self._canvas

    def _prepare(self, frame: np.ndarray | FrameView) -> np.ndarray:
        frame = self._sampled(frame) if isinstance(frame, FrameView) else np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
            raise ValueError(f"cut detection needs uint8 [H, W, 3] RGB frames, got {frame.dtype} {frame.shape}")
        if frame.ndim == 2 or frame.shape[2] == 1:
            frame = np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        if self._size is None:
            self._size = shrunk_size(h, w, self.max_side)
        if (w, h) != self._size:
            frame = self._cv2.resize(frame, self._size, interpolation=self._cv2.INTER_LINEAR)
        return self._cv2.cvtColor(np.ascontiguousarray(frame), self._cv2.COLOR_RGB2BGR)

    def feed(self, frame_index: int, frame_rgb_uint8: np.ndarray | FrameView) -> list[int]:
        """Score one frame; returns the cuts confirmed by it (usually none; see ``lag``)."""
        if self._finished:
            raise RuntimeError("CutDetector.feed after cuts(): the detector has finished")
        if self._last is not None and frame_index != self._last + 1:
            raise ValueError(f"frames must be fed in order: got frame {frame_index} after {self._last}")
        frame = self._prepare(frame_rgb_uint8)
        if self._first is None:
            self._first = frame_index
        self._last = frame_index
        self._remember(frame_index, frame)
        return self._collect(self._detector.process_frame(self._position(frame_index), frame), frame_index)

    def cuts(self) -> list[int]:
        """All cuts, sorted, after the last frame (a cut at frame ``c``: a new shot starts at ``c``)."""
        if not self._finished and self._last is not None:
            self._collect(self._detector.post_process(self._position(self._last)), None)
        self._finished = True
        self._canvas = None
        self._recent.clear()
        first = -1 if self._first is None else self._first
        return sorted(c for c in self._cuts if c > first)

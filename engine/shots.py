"""Shots: a long edit split at its cuts, so snippets, co-alignment and merging stay inside a shot.

A *cut* at frame ``c`` means a new shot starts at ``c``. Cuts come from streaming detection
(:class:`CutDetector`, PySceneDetect's detectors fed the frames the engine already decodes)
or from a cut-list file an editor already has (:func:`read_cut_list`: plain frame numbers,
CSV, CMX3600 EDL). :func:`plan_shot_snippets` plans the snippet groups of every shot on its
own, with global frame indices (``SnippetGroup.offset``), so no snippet spans a cut.
Outputs: ``shots.json`` (:func:`write_shots_json`) and a contact sheet PNG
(:func:`contact_sheet`), one tile per shot with RGB and colourized depth of its middle frame.

All frame numbers are 0-based within the processed clip unless said otherwise.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import mmap
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..storage.inputs.source import ArrayView, FrameView, to_uint8
from .snippets import SnippetGroup, plan_snippets, refinement_dilations

# --------------------------------------------------------------------------------------------
# Shots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """Shot ``index``: frames ``[start, stop)`` of the processed clip."""

    index: int
    start: int
    stop: int

    @property
    def frames(self) -> range:
        """The shot's frame indices (``len(shot.frames)`` is its frame count)."""
        return range(self.start, self.stop)

    @property
    def num_frames(self) -> int:
        return self.stop - self.start

    @property
    def middle(self) -> int:
        """The representative frame (contact sheet): ``start + num_frames // 2``."""
        return self.start + self.num_frames // 2


def shots_from_cuts(cuts: Sequence[int], num_frames: int) -> list[Shot]:
    """Shots of a ``num_frames`` clip cut at ``cuts`` (sorted, deduplicated; cuts ``<= 0`` or
    ``>= num_frames`` are ignored). No cuts: one shot ``[0, num_frames)``; no frames: no shots."""
    if num_frames <= 0:
        return []
    bounds = [0, *sorted({int(c) for c in cuts if 0 < int(c) < num_frames}), num_frames]
    return [Shot(k, a, b) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def cuts_from_shots(shots: Sequence[Shot]) -> list[int]:
    """The cut frames between ``shots`` (each shot's start but the first)."""
    return [s.start for s in shots[1:]]


# --------------------------------------------------------------------------------------------
# Per-shot snippet plans
# --------------------------------------------------------------------------------------------


def _shot_label(shot: Shot) -> str:
    return f"shot {shot.index} (frames {shot.start}-{shot.stop - 1})"


def plan_shot_snippets(shots: Sequence[Shot], dilations: tuple[int, ...], lengths: tuple[int, ...],
                       cap: bool) -> tuple[list[list[SnippetGroup]], list[str]]:
    """Snippet groups of every shot, planned as if the shot were a video of its own.

    Returns ``(groups, notes)``: ``groups[k]`` are shot ``k``'s groups (from :func:`plan_snippets`
    over the shot's length: dilation cap per shot, short shots shorten snippets and drop
    dilations like short videos) with ``offset = shot.start``, so their frame indices are global
    and no snippet leaves its shot. With a single shot the groups and notes are exactly
    ``plan_snippets(T, ...)``'s; with several, each note is prefixed with its shot.
    """
    groups: list[list[SnippetGroup]] = []
    notes: list[str] = []
    single = len(shots) == 1
    for shot in shots:
        planned, shot_notes = plan_snippets(shot.num_frames, dilations, lengths, cap,
                                            unit="video" if single else "shot")
        groups.append([replace(g, offset=shot.start) for g in planned])
        notes += shot_notes if single else [f"{_shot_label(shot)}: {n}" for n in shot_notes]
    return groups, notes


def shot_refinement_dilations(shots: Sequence[Shot], steps: int, start_dilation: int, length: int,
                              cap: bool) -> list[list[int]]:
    """The refinement schedule of every shot (start dilation capped per shot length when ``cap``)."""
    return [refinement_dilations(steps, start_dilation, length, shot.num_frames, cap) for shot in shots]


# --------------------------------------------------------------------------------------------
# Streaming cut detection
# --------------------------------------------------------------------------------------------

DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 3.0}
"""``content``: mean HSV change between consecutive frames (0-255 scale), PySceneDetect's
default; ``adaptive``: that change over the mean of the 2 frames either side (PySceneDetect's
default ratio; a frame must also change by at least ``ADAPTIVE_MIN_CONTENT``)."""
ADAPTIVE_MIN_CONTENT = 15.0
ADAPTIVE_WINDOW = 2
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
    """Finds hard cuts while frames stream past; PySceneDetect's ``ContentDetector`` or
    ``AdaptiveDetector`` does the scoring.

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
    :func:`default_min_shot` of ``fps``. A flash (two cuts closer than ``min_shot``) keeps its
    first cut. The last shot may be shorter than ``min_shot`` (a real cut near the end is kept).
    """

    METHODS = ("content", "adaptive")

    def __init__(self, method: str = "content", threshold: float | None = None, min_shot: int | None = None,
                 fps: float | None = 25.0, max_side: int = DETECT_SIDE):
        if method not in self.METHODS:
            raise ValueError(f"unknown cut detection method '{method}' (use one of {', '.join(self.METHODS)})")
        self.method = method
        self.threshold = float(DEFAULT_THRESHOLDS[method] if threshold is None else threshold)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.min_shot = default_min_shot(fps) if min_shot is None else int(min_shot)
        if self.threshold <= 0 or self.min_shot < 0 or max_side < 8:
            raise ValueError("cut detection needs threshold > 0, min_shot >= 0 and max_side >= 8")
        self.max_side = int(max_side)
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
        self._cuts: set[int] = set()
        self._finished = False

    @property
    def lag(self) -> int:
        """At most this many frames pass between a cut's frame and the ``feed`` that reports it."""
        fallback = ADAPTIVE_WINDOW if self.method == "adaptive" else self.min_shot
        return int(getattr(self._detector, "event_buffer_length", fallback))

    def describe(self) -> dict:
        """How cuts are found (for ``shots.json``)."""
        return {"method": self.method, "threshold": self.threshold, "min_shot": self.min_shot,
                "detect_size": list(self._size) if self._size else None}

    def _position(self, index: int):
        if not self._timecodes:
            return index
        from scenedetect import FrameTimecode
        return FrameTimecode(index, fps=self.fps)

    def _collect(self, found) -> list[int]:
        new = sorted({int(getattr(c, "frame_num", c)) for c in found} - self._cuts)
        self._cuts.update(new)
        return new

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
        return self._collect(self._detector.process_frame(self._position(frame_index), frame))

    def cuts(self) -> list[int]:
        """All cuts, sorted, after the last frame (a cut at frame ``c``: a new shot starts at ``c``)."""
        if not self._finished and self._last is not None:
            self._collect(self._detector.post_process(self._position(self._last)))
        self._finished = True
        self._canvas = None
        first = -1 if self._first is None else self._first
        return sorted(c for c in self._cuts if c > first)


# --------------------------------------------------------------------------------------------
# Cut-list files
# --------------------------------------------------------------------------------------------

_SMPTE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;])(\d{2,3})$")
_EVENT = re.compile(r"^\s*\d{1,6}\s")
_EDL_IGNORED = ("TITLE:", "FCM:", "*", "M2", "SPLIT:", "AUD", ">>>", "EFFECTS NAME", "BLEND", "%",
                "#", "FROM CLIP", "TO CLIP", "SOURCE FILE", "LOC:", "ASC_", "REM", "COMMENT")


def smpte_to_frame(timecode: str, fps: float, drop_frame: bool | None = None) -> int:
    """``HH:MM:SS:FF`` (``;`` before FF or ``drop_frame=True``: drop-frame) to a frame count.

    Non-drop timecode counts frames at the nominal rate ``round(fps)`` (so 23.976 fps counts
    24 per labelled second); drop-frame skips frame labels 0-1 (0-3 at 59.94) of every minute
    not divisible by 10, as SMPTE 12M does for 29.97/59.94 fps.
    """
    m = _SMPTE.match(timecode.strip())
    if not m:
        raise ValueError(f"'{timecode}' is not an HH:MM:SS:FF timecode")
    hh, mm, ss, sep, ff = m.groups()
    h, mi, s, f = int(hh), int(mm), int(ss), int(ff)
    nominal = max(1, round(fps))
    if mi >= 60 or s >= 60 or f >= nominal:
        raise ValueError(f"timecode '{timecode}' out of range at {fps:g} fps (MM < 60, SS < 60, FF < {nominal})")
    frames = ((h * 60 + mi) * 60 + s) * nominal + f
    if drop_frame or (drop_frame is None and sep == ";"):
        if nominal % 30 or abs(fps - nominal * 1000 / 1001) > 0.01:
            raise ValueError(f"drop-frame timecode '{timecode}' needs a 29.97 or 59.94 fps clip, not {fps:g} fps")
        dropped = nominal // 15
        minutes = h * 60 + mi
        if mi % 10 and s == 0 and f < dropped:
            raise ValueError(f"drop-frame timecode '{timecode}' names a dropped frame label")
        frames -= dropped * (minutes - minutes // 10)
    return frames


def parse_time(value: str, fps: float, seconds: bool = False, drop_frame: bool | None = None) -> int:
    """One time value of a cut list to a frame number (of the source video, 0-based).

    Integers are frame numbers (seconds when ``seconds``); ``HH:MM:SS:FF`` / ``HH:MM:SS;FF`` are
    SMPTE timecodes (:func:`smpte_to_frame`); ``HH:MM:SS[.mmm]``, ``MM:SS[.mmm]``, ``12.5`` and
    ``12.5s`` are times in seconds (parsed by PySceneDetect's ``FrameTimecode``), rounded to the
    nearest frame.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty time value")
    if text.isdigit() and not seconds:
        return int(text)
    if _SMPTE.match(text):
        return smpte_to_frame(text, fps, drop_frame)
    if text.count(":") >= 3 or ";" in text:
        raise ValueError(f"'{value}' is not a frame number or timecode")
    from scenedetect import FrameTimecode

    try:
        return int(FrameTimecode(text if not text.isdigit() else f"{text}s", fps=float(fps)).frame_num)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not a frame number, HH:MM:SS:FF, HH:MM:SS.mmm or seconds value") from None


def _located(path: Path, line: int | None, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise _located(path, None, f"cannot read cut list ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise _located(path, None, "cut list is not UTF-8 text") from None


def _uncomment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _guess_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".edl", ".csv"):
        return suffix[1:]
    for line in text.splitlines():
        line = _uncomment(line)
        if not line:
            continue
        if line.upper().startswith(("TITLE:", "FCM:")) or re.match(r"^\d{1,6}\s+\S+\s+\S+\s+[CDWK]", line):
            return "edl"
        return "csv" if re.search(r"[A-Za-z]{2}", line) else "text"
    return "text"


def _parse_text(path: Path, text: str, fps: float) -> list[int]:
    cuts = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in re.split(r"[,\s]+", _uncomment(line)):
            if token:
                try:
                    cuts.append(parse_time(token, fps))
                except ValueError as e:
                    raise _located(path, number, f"bad cut: {e}") from None
    return cuts


_START_COLUMNS = ("start", "start frame", "start_frame", "startframe", "in", "cut", "frame", "start timecode",
                  "start time", "start_time", "start time (seconds)", "start (seconds)", "record in", "rec in",
                  "record_in", "rec_in")
_END_COLUMNS = ("end", "end frame", "end_frame", "endframe", "out", "stop", "end timecode", "end time", "end_time",
                "end time (seconds)", "end (seconds)", "record out", "rec out", "record_out", "rec_out")


def _is_values(row: list[str]) -> bool:
    """A row of bare time values (no header words)."""
    return all(re.fullmatch(r"[\d.:;]*s?", c.strip().lower()) for c in row)


def _find_column(cells: list[str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in cells), None)


def _parse_csv(path: Path, text: str, fps: float) -> list[int]:
    """Rows of start (and optionally end) times; a header names the columns (see read_cut_list)."""
    rows = [(n, next(csv.reader([line]))) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]
    lowered = [[c.strip().lower() for c in row] for _, row in rows]
    header_at = next((k for k, cells in enumerate(lowered) if _find_column(cells, _START_COLUMNS)), None)
    columns: list[tuple[int, bool, int]] = []  # (column, values in seconds, frame-number base)
    if header_at is None:  # no header: columns are start[, end]
        bad = next((n for n, row in rows if not _is_values(row)), None)
        if bad is not None:
            raise _located(path, bad, "no start column in CSV header (expected e.g. 'start', 'in' or 'Start Frame')")
        columns = [(i, False, 0) for i in range(min(2, max((len(r) for _, r in rows), default=0)))]
    else:
        # Only PySceneDetect's cut-list row ("Timecode List:" or bare cut timecodes) may precede the header.
        before = rows[:header_at]
        if len(before) > 1 or (before and not (_is_values(before[0][1]) or lowered[0][0] == "timecode list:")):
            raise _located(path, before[-1][0], "unexpected row before the CSV header")
        cells = lowered[header_at]
        scenedetect_list = "scene number" in cells
        for names in (_START_COLUMNS, _END_COLUMNS):
            found = _find_column(cells, names)
            if found is not None:
                # PySceneDetect's scene list numbers its Start Frame from 1 (its End Frame is exclusive).
                columns.append((cells.index(found), "second" in found, int(scenedetect_list and found == "start frame")))
    cuts = []
    for n, row in rows[(header_at + 1) if header_at is not None else 0:]:
        for k, (col, seconds, base) in enumerate(columns):
            if col >= len(row) or not row[col].strip():
                if k == 0:
                    raise _located(path, n, f"missing start value in column {col + 1}")
                continue
            try:
                cuts.append(parse_time(row[col], fps, seconds=seconds) - base)
            except ValueError as e:
                raise _located(path, n, f"bad time in column {col + 1}: {e}") from None
    return cuts


def _parse_edl(path: Path, text: str, fps: float) -> list[int]:
    """CMX3600: cuts at every video event's record in (and record out), relative to the first event."""
    drop_frame = None
    boundaries: list[int] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("FCM:"):
            drop_frame = "NON" not in upper and "DROP" in upper
            continue
        if not _EVENT.match(raw) and not line.isdigit():
            if upper.startswith(_EDL_IGNORED):
                continue
            raise _located(path, number, f"not a CMX3600 event or comment line: '{line[:60]}'")
        tokens = line.split()
        if len(tokens) < 8:
            raise _located(path, number, "CMX3600 event needs: number, reel, channel, transition, "
                                         "source in/out and record in/out timecodes")
        channel = tokens[2].upper()
        try:
            _src_in, _src_out, rec_in, rec_out = (smpte_to_frame(t, fps, drop_frame) for t in tokens[-4:])
        except ValueError as e:
            raise _located(path, number, f"bad event timecode: {e}") from None
        if rec_out < rec_in:
            raise _located(path, number, "event record out before record in")
        if "V" in channel or channel == "B":
            boundaries += [rec_in, rec_out]
    if not boundaries:
        raise _located(path, None, "no video events in EDL")
    zero = boundaries[0]
    return [b - zero for b in boundaries]


CUT_LIST_FORMATS = ("auto", "text", "csv", "edl")


def read_cut_list(path: str | Path, fps: float, start: int = 0, num_frames: int | None = None,
                  fmt: str = "auto") -> list[int]:
    """Cut frames (0-based, within the processed clip) from an editor's cut list.

    Formats (``fmt="auto"``: ``.edl``/``.csv`` by extension, otherwise by content):

    * ``text``: frame numbers of the source video (0-based), one per line or separated by
      commas/spaces, ``#`` comments; timecodes as in :func:`parse_time` work too.
    * ``csv``: a header names a start column (``start``, ``in``, ``Start Frame``, ``Start
      Timecode``, ...) and optionally an end column; every start and end is a shot boundary.
      Values are frame numbers (0-based), ``HH:MM:SS:FF``, ``HH:MM:SS.mmm`` or seconds (columns
      named ``... (seconds)``). PySceneDetect's scene list (``Scene Number`` column, optional
      ``Timecode List:`` first row) is read as it writes it: its ``Start Frame`` counts from 1.
      Without a header the columns are start[, end].
    * ``edl``: CMX3600; each video event's record in/out (``HH:MM:SS:FF``; drop-frame with
      ``FCM: DROP FRAME`` or ``;``) is a boundary, counted from the first event's record in.

    Source frame numbers become clip frames by subtracting ``start`` (``--start``); the result is
    sorted and deduplicated, keeps only cuts inside the clip (``> 0``, and ``< num_frames`` when
    given). Errors are one-line ``ValueError`` naming the file and line.
    """
    path = Path(path)
    if fmt not in CUT_LIST_FORMATS:
        raise ValueError(f"unknown cut list format '{fmt}' (use one of {', '.join(CUT_LIST_FORMATS)})")
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"{path}: cut list needs the clip's frame rate (got {fps})")
    text = _read_text(path)
    fmt = _guess_format(path, text) if fmt == "auto" else fmt
    parse = {"text": _parse_text, "csv": _parse_csv, "edl": _parse_edl}[fmt]
    cuts = parse(path, text, fps)
    limit = num_frames if num_frames is not None else math.inf
    return sorted({c - start for c in cuts if 0 < c - start < limit})


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_shots_json(path: str | Path, shots: Sequence[Shot], fps: float, source: dict | None = None,
                     start: int = 0) -> Path:
    """Write ``shots.json``: per shot start, end (exclusive), frames and start/end seconds (within
    the clip), plus the cut list and ``source`` (how cuts were found, e.g.
    ``CutDetector.describe()`` or ``{"method": "file", "file": ..., "format": ...}``).
    ``start`` is the clip's first frame in the source video (``--start``)."""
    path = Path(path)
    fps = float(fps)
    doc = {
        "version": 1,
        "fps": fps,
        "num_frames": shots[-1].stop if shots else 0,
        "clip_start_frame": int(start),
        "cuts": cuts_from_shots(shots),
        "source": dict(source or {}),
        "shots": [{"index": s.index, "start": s.start, "end": s.stop, "frames": s.num_frames,
                   "start_seconds": round(s.start / fps, 6), "end_seconds": round(s.stop / fps, 6)}
                  for s in shots],
    }
    _write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def read_shots_json(path: str | Path) -> tuple[list[Shot], dict]:
    """Shots and the whole document of a ``shots.json`` written by :func:`write_shots_json`."""
    path = Path(path)
    try:
        doc = json.loads(_read_text(path))
        shots = [Shot(int(s["index"]), int(s["start"]), int(s["end"])) for s in doc["shots"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise _located(path, None, f"not a shots.json file ({e})") from None
    return shots, doc


def thumbnail(frame: np.ndarray | FrameView, max_side: int = 160) -> np.ndarray:
    """``frame`` shrunk so its longer side is at most ``max_side`` px (aspect kept, never enlarged).

    RGB (an ``[H, W, 3]`` array or a ``FrameView``, uint8, uint16 or float in [0, 1]) ->
    ``uint8 [h, w, 3]``, antialiased bilinear, read in bands of rows (an 8K frame is never
    converted whole); depth ``float [H, W]`` -> float32 ``[h, w]``, bilinear."""
    from PIL import Image

    from .latents import display_frame

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

    from ..storage.exporters.colour_video import colour_table, colourize

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
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.png")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, path)
    return boxes

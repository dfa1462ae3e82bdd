"""Cut lists an editor already has: frame numbers, CSV (PySceneDetect's too) and CMX3600 EDL.

``read_cut_list`` reads a file into ``CutPoint``s, each in the unit it was written in;
``clip_cuts`` places them on the processed clip (the first processed frame at or after each)
and returns those that fall outside it, so a caller can say so. Units:

* ``number``: an integer is a frame number of the input: a video's frame index (from 0), an
  image sequence's own number (``shot_1001.exr`` is frame 1001);
* ``timecode``: ``HH:MM:SS:FF`` (``;``: drop-frame) is the input's timecode when it has one (a
  video's ``timecode`` tag, an EXR's ``timeCode``), else counted from 00:00:00:00 at its first frame;
* ``offset``: frames from the input's first frame (an EDL's record times, from its first event);
* ``seconds``: ``HH:MM:SS.mmm``, ``MM:SS.mmm``, ``12.5``, ``12.5s`` or a ``(seconds)`` column: time
  from the input's first frame, placed by the frames' real time stamps (variable-rate video too).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...storage.timecode import SMPTE, Timecode, smpte_to_frame

_DECIMAL = re.compile(r"\d+(\.\d*)?|\.\d+")
_EVENT = re.compile(r"^\s*\d{1,6}\s")
_EDL_IGNORED = ("TITLE:", "FCM:", "*", "M2", "SPLIT:", "AUD", ">>>", "EFFECTS NAME", "BLEND", "%",
                "#", "FROM CLIP", "TO CLIP", "SOURCE FILE", "LOC:", "ASC_", "REM", "COMMENT")


@dataclass(frozen=True)
class CutPoint:
    """A shot boundary of a cut list: ``value`` in ``unit`` (see the module docstring) and
    ``where`` it was read (``cuts.csv:4``)."""

    value: float
    unit: str
    where: str = ""

    def describe(self) -> str:
        what = {"number": "frame {:g}", "timecode": "timecode frame {:g}", "offset": "frame offset {:g}",
                "seconds": "{:g} s"}[self.unit].format(self.value)
        return f"{self.where}: {what}" if self.where else what


def parse_time(value: str, fps: float, seconds: bool = False, drop_frame: bool | None = None) -> tuple[float, str]:
    """One time value of a cut list as ``(value, unit)`` (see the module docstring).

    Integers are frame numbers (seconds when ``seconds``); ``HH:MM:SS:FF`` / ``HH:MM:SS;FF`` are
    SMPTE timecodes (frames from 00:00:00:00, :func:`smpte_to_frame`); ``HH:MM:SS[.mmm]``,
    ``MM:SS[.mmm]``, ``12.5`` and ``12.5s`` are seconds.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty time value")
    if text.isdigit() and not seconds:
        return int(text), "number"
    if SMPTE.match(text):
        return smpte_to_frame(text, fps, drop_frame), "timecode"
    parts = (text[:-1] if text.endswith("s") else text).split(":")
    if len(parts) > 3 or not all(p.isdigit() for p in parts[:-1]) or not _DECIMAL.fullmatch(parts[-1]):
        raise ValueError(f"'{value}' is not a frame number, HH:MM:SS:FF, HH:MM:SS.mmm or seconds value")
    whole = [int(p) for p in parts[:-1]]
    if len(parts) > 1 and (float(parts[-1]) >= 60 or any(v >= 60 for v in whole[1:])):
        raise ValueError(f"'{value}' is out of range (MM < 60, SS < 60)")
    minutes = 0
    for v in whole:
        minutes = minutes * 60 + v
    return minutes * 60 + float(parts[-1]), "seconds"


def located(path: Path, line: int | None, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise located(path, None, f"cannot read cut list ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise located(path, None, "cut list is not UTF-8 text") from None


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


def _parse_text(path: Path, text: str, fps: float) -> list[CutPoint]:
    cuts = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in re.split(r"[,\s]+", _uncomment(line)):
            if token:
                try:
                    cuts.append(CutPoint(*parse_time(token, fps), f"{path.name}:{number}"))
                except ValueError as e:
                    raise located(path, number, f"bad cut: {e}") from None
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


def _parse_csv(path: Path, text: str, fps: float) -> list[CutPoint]:
    """Rows of start (and optionally end) times; a header names the columns (see read_cut_list)."""
    rows = [(n, next(csv.reader([line]))) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]
    lowered = [[c.strip().lower() for c in row] for _, row in rows]
    header_at = next((k for k, cells in enumerate(lowered) if _find_column(cells, _START_COLUMNS)), None)
    columns: list[tuple[int, bool, int]] = []  # (column, values in seconds, frame-number base)
    if header_at is None:  # no header: columns are start[, end]
        bad = next((n for n, row in rows if not _is_values(row)), None)
        if bad is not None:
            raise located(path, bad, "no start column in CSV header (expected e.g. 'start', 'in' or 'Start Frame')")
        columns = [(i, False, 0) for i in range(min(2, max((len(r) for _, r in rows), default=0)))]
    else:
        # Only PySceneDetect's cut-list row ("Timecode List:" or bare cut timecodes) may precede the header.
        before = rows[:header_at]
        if len(before) > 1 or (before and not (_is_values(before[0][1]) or lowered[0][0] == "timecode list:")):
            raise located(path, before[-1][0], "unexpected row before the CSV header")
        cells = lowered[header_at]
        scenedetect_list = "scene number" in cells
        for names in (_START_COLUMNS, _END_COLUMNS):
            found = _find_column(cells, names)
            if found is not None:
                # PySceneDetect's scene list numbers its Start Frame from 1 (its End Frame is exclusive).
                columns.append((cells.index(found), "second" in found, int(scenedetect_list and found == "start frame")))
    cuts = []
    for n, row in rows[(header_at + 1) if header_at is not None else 0:]:
        event = []
        for k, (col, seconds, base) in enumerate(columns):
            if col >= len(row) or not row[col].strip():
                if k == 0:
                    raise located(path, n, f"missing start value in column {col + 1}")
                continue
            try:
                value, unit = parse_time(row[col], fps, seconds=seconds)
            except ValueError as e:
                raise located(path, n, f"bad time in column {col + 1}: {e}") from None
            event.append(CutPoint(value - base if unit == "number" else value, unit, f"{path.name}:{n}"))
        if len(event) == 2 and event[0].unit == event[1].unit and event[1].value < event[0].value:
            raise located(path, n, f"event ends ({row[columns[1][0]].strip()}) before it starts "
                                   f"({row[columns[0][0]].strip()}): a backwards event")
        cuts += event
    return cuts


def _parse_edl(path: Path, text: str, fps: float) -> list[CutPoint]:
    """CMX3600: cuts at every video event's record in (and record out), frame offsets from the first event's."""
    drop_frame = None
    boundaries: list[tuple[int, int]] = []  # (frame, line)
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
            raise located(path, number, f"not a CMX3600 event or comment line: '{line[:60]}'")
        tokens = line.split()
        if len(tokens) < 8:
            raise located(path, number, "CMX3600 event needs: number, reel, channel, transition, "
                                         "source in/out and record in/out timecodes")
        channel = tokens[2].upper()
        try:
            _src_in, _src_out, rec_in, rec_out = (smpte_to_frame(t, fps, drop_frame) for t in tokens[-4:])
        except ValueError as e:
            raise located(path, number, f"bad event timecode: {e}") from None
        if rec_out < rec_in:
            raise located(path, number, "event record out before record in")
        if "V" in channel or channel == "B":
            boundaries += [(rec_in, number), (rec_out, number)]
    if not boundaries:
        raise located(path, None, "no video events in EDL")
    zero = boundaries[0][0]
    return [CutPoint(b - zero, "offset", f"{path.name}:{line}") for b, line in boundaries]


CUT_LIST_FORMATS = ("auto", "text", "csv", "edl")


def read_cut_list(path: str | Path, fps: float, fmt: str = "auto") -> list[CutPoint]:
    """The shot boundaries of an editor's cut list, each in the unit it was written in (module docstring).

    Formats (``fmt="auto"``: ``.edl``/``.csv`` by extension, otherwise by content):

    * ``text``: values one per line or separated by commas/spaces, ``#`` comments.
    * ``csv``: a header names a start column (``start``, ``in``, ``Start Frame``, ``Start
      Timecode``, ...) and optionally an end column; every start and end is a shot boundary,
      and an event that ends before it starts is an error. Columns named ``... (seconds)``
      hold seconds. PySceneDetect's scene list (``Scene Number`` column, optional ``Timecode
      List:`` first row) is read as it writes it: its ``Start Frame`` counts from 1. Without a
      header the columns are start[, end].
    * ``edl``: CMX3600; each video event's record in/out (``HH:MM:SS:FF``; drop-frame with
      ``FCM: DROP FRAME`` or ``;``) is a boundary, counted from the first event's record in.

    ``fps``: the input's frame rate (timecodes count its frames). Errors are one-line
    ``ValueError`` naming the file and line.
    """
    path = Path(path)
    if fmt not in CUT_LIST_FORMATS:
        raise ValueError(f"unknown cut list format '{fmt}' (use one of {', '.join(CUT_LIST_FORMATS)})")
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"{path}: cut list needs the clip's frame rate (got {fps})")
    text = read_text(path)
    fmt = _guess_format(path, text) if fmt == "auto" else fmt
    parse = {"text": _parse_text, "csv": _parse_csv, "edl": _parse_edl}[fmt]
    return parse(path, text, fps)


def clip_cuts(points: list[CutPoint], numbers: np.ndarray, times: np.ndarray, fps: float, first_number: int = 0,
              timecode: Timecode | None = None) -> tuple[list[int], list[CutPoint]]:
    """Cut positions in the clip (sorted, in ``1..T-1``: a boundary starts the shot at the first
    processed frame at or after it) and the points outside the clip.

    ``numbers``, ``times``: the processed frames' numbers and seconds (the store's coordinates);
    ``fps``: the input's rate; ``first_number``: the input's first frame number (an image
    sequence's, for offsets); ``timecode``: the input's, for ``HH:MM:SS:FF`` values. A point at
    the clip's first frame is no cut and not outside either.
    """
    tolerance = 0.5 / fps  # seconds: half a frame of the input
    cuts, outside = set(), []
    for point in points:
        if point.unit == "seconds":
            inside = times[0] - tolerance <= point.value <= times[-1] + tolerance
            position = int(np.searchsorted(times, point.value - tolerance))
        else:
            number = point.value + first_number if point.unit == "offset" else point.value
            if point.unit == "timecode":
                number = point.value + (timecode.number - smpte_to_frame(timecode.label, timecode.fps)
                                        if timecode else first_number)
            inside = numbers[0] <= number <= numbers[-1]
            position = int(np.searchsorted(numbers, number))
        if not inside:
            outside.append(point)
        elif 0 < position < len(numbers):
            cuts.add(position)
    return sorted(cuts), outside


def outside_note(path: str | Path, outside: list[CutPoint], total: int, numbers: np.ndarray,
                 timecode: Timecode | None) -> str:
    """One line saying which cuts of ``path`` fall outside the clip of frames ``numbers``."""
    listed = ", ".join(p.describe() for p in outside[:4]) + (", ..." if len(outside) > 4 else "")
    hints = ["integers are the input's own frame numbers"]
    if timecode is not None and any(p.unit == "timecode" for p in outside):
        hints.append(f"HH:MM:SS:FF values are its timecode, which starts at {timecode.at(int(numbers[0]))} here")
    return (f"{len(outside)} of {total} cuts in {path} fall outside the processed frames {numbers[0]}-{numbers[-1]} "
            f"and are ignored ({listed}; {'; '.join(hints)})")

"""Cut lists an editor already has: frame numbers, CSV (PySceneDetect's too) and CMX3600 EDL."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path


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


def _parse_text(path: Path, text: str, fps: float) -> list[int]:
    cuts = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in re.split(r"[,\s]+", _uncomment(line)):
            if token:
                try:
                    cuts.append(parse_time(token, fps))
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
        for k, (col, seconds, base) in enumerate(columns):
            if col >= len(row) or not row[col].strip():
                if k == 0:
                    raise located(path, n, f"missing start value in column {col + 1}")
                continue
            try:
                cuts.append(parse_time(row[col], fps, seconds=seconds) - base)
            except ValueError as e:
                raise located(path, n, f"bad time in column {col + 1}: {e}") from None
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
            boundaries += [rec_in, rec_out]
    if not boundaries:
        raise located(path, None, "no video events in EDL")
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
    text = read_text(path)
    fmt = _guess_format(path, text) if fmt == "auto" else fmt
    parse = {"text": _parse_text, "csv": _parse_csv, "edl": _parse_edl}[fmt]
    cuts = parse(path, text, fps)
    limit = num_frames if num_frames is not None else math.inf
    return sorted({c - start for c in cuts if 0 < c - start < limit})

"""``NAME_shots.json``: every shot's frames and times, the cuts and how they were found."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ...storage.files import write_bytes_atomically
from .cut_lists import located, read_text
from .model import Shot, cuts_from_shots


def write_shots_json(path: str | Path, shots: Sequence[Shot], fps: float, source: dict | None = None,
                     numbers: Sequence[int] | None = None, times: Sequence[float] | None = None) -> Path:
    """Write ``shots.json``: per shot start, end (exclusive) and frames (positions in the clip),
    the input's frame numbers of its first and last frame, and start/end seconds (from the
    input's first frame), plus the cut list and ``source`` (how cuts were found, e.g.
    ``CutDetector.describe()`` or ``{"method": "file", ...}``). ``numbers``, ``times``: each
    clip frame's number and seconds (default ``0, 1, ...`` at ``fps``); a shot ends when the
    next begins, the last one a frame (``1 / fps``) after its last frame."""
    path = Path(path)
    fps = float(fps)
    count = shots[-1].stop if shots else 0
    numbers = list(range(count)) if numbers is None else [int(n) for n in numbers]
    times = [n / fps for n in range(count)] if times is None else [float(t) for t in times]
    ends = [*times[1:], times[-1] + 1 / fps] if count else []
    doc = {
        "version": 2,
        "fps": fps,
        "num_frames": count,
        "clip_start_frame": numbers[0] if count else 0,
        "cuts": cuts_from_shots(shots),
        "source": dict(source or {}),
        "shots": [{"index": s.index, "start": s.start, "end": s.stop, "frames": s.num_frames,
                   "first_frame_number": numbers[s.start], "last_frame_number": numbers[s.stop - 1],
                   "start_seconds": round(times[s.start], 6), "end_seconds": round(ends[s.stop - 1], 6)}
                  for s in shots],
    }
    write_bytes_atomically(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def read_shots_json(path: str | Path) -> tuple[list[Shot], dict]:
    """Shots and the whole document of a ``shots.json`` written by :func:`write_shots_json`."""
    path = Path(path)
    try:
        doc = json.loads(read_text(path))
        shots = [Shot(int(s["index"]), int(s["start"]), int(s["end"])) for s in doc["shots"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise located(path, None, f"not a shots.json file ({e})") from None
    return shots, doc

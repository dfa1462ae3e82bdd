"""``NAME_shots.json``: every shot's frames and times, the cuts and how they were found."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ...storage.files import write_bytes_atomically
from .cut_lists import located, read_text
from .model import Shot, cuts_from_shots


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

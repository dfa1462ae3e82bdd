"""SMPTE timecodes: ``HH:MM:SS:FF`` labels <-> frame counts, non-drop and drop-frame (SMPTE 12M).

Timecode counts frames at the *nominal* rate ``round(fps)`` (23.976 fps counts 24 labels a
second). Drop-frame (a ``;`` before the frames, 29.97 and 59.94 fps only) skips the labels
``00``-``01`` (``00``-``03`` at 59.94) of every minute not divisible by ten, so that the
labels keep up with the clock. Labels wrap at 24 hours.

``Timecode`` ties a label to a frame number of a source (``Timecode("01:00:00:00", 24, 1001)``:
frame 1001 is labelled 01:00:00:00) and labels any other frame number of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SMPTE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;])(\d{2,3})$")


def nominal_rate(fps: float) -> int:
    """Labels per second: ``round(fps)``, at least 1."""
    return max(1, round(fps))


def dropped_labels(fps: float) -> int:
    """Labels skipped per minute by drop-frame timecode at ``fps`` (2 at 29.97, 4 at 59.94);
    ValueError at rates that have no drop-frame timecode."""
    nominal = nominal_rate(fps)
    if nominal % 30 or abs(fps - nominal * 1000 / 1001) > 0.01:
        raise ValueError(f"drop-frame timecode needs a 29.97 or 59.94 fps clip, not {fps:g} fps")
    return nominal // 15


def smpte_to_frame(timecode: str, fps: float, drop_frame: bool | None = None) -> int:
    """``HH:MM:SS:FF`` (``;`` before FF or ``drop_frame=True``: drop-frame) to a frame count from 00:00:00:00."""
    m = SMPTE.match(timecode.strip())
    if not m:
        raise ValueError(f"'{timecode}' is not an HH:MM:SS:FF timecode")
    hh, mm, ss, sep, ff = m.groups()
    h, mi, s, f = int(hh), int(mm), int(ss), int(ff)
    nominal = nominal_rate(fps)
    if mi >= 60 or s >= 60 or f >= nominal:
        raise ValueError(f"timecode '{timecode}' out of range at {fps:g} fps (MM < 60, SS < 60, FF < {nominal})")
    frames = ((h * 60 + mi) * 60 + s) * nominal + f
    if drop_frame or (drop_frame is None and sep == ";"):
        try:
            dropped = dropped_labels(fps)
        except ValueError as exc:
            raise ValueError(f"timecode '{timecode}': {exc}") from None
        minutes = h * 60 + mi
        if mi % 10 and s == 0 and f < dropped:
            raise ValueError(f"drop-frame timecode '{timecode}' names a dropped frame label")
        frames -= dropped * (minutes - minutes // 10)
    return frames


def frame_to_smpte(frames: int, fps: float, drop_frame: bool = False) -> str:
    """The label of frame count ``frames`` (from 00:00:00:00; wraps at 24 hours): the inverse of
    ``smpte_to_frame``."""
    nominal = nominal_rate(fps)
    if drop_frame:
        dropped = dropped_labels(fps)
        per_minute = nominal * 60 - dropped
        per_ten = nominal * 600 - 9 * dropped
        frames %= 24 * 6 * per_ten
        tens, rest = divmod(frames, per_ten)
        frames += 9 * dropped * tens + (dropped * ((rest - dropped) // per_minute) if rest >= dropped else 0)
    else:
        frames %= 24 * 3600 * nominal
    seconds, f = divmod(frames, nominal)
    minutes, s = divmod(seconds, 60)
    h, mi = divmod(minutes, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}{';' if drop_frame else ':'}{f:02d}"


@dataclass(frozen=True)
class Timecode:
    """Frame ``number`` of a source is labelled ``label`` at ``fps``; ``at(n)`` labels frame ``n``.

    ``label``: ``HH:MM:SS:FF`` (``;``: drop-frame). ``fps``: the source's frame rate (the
    labels count its frames, whatever frames a run keeps).
    """

    label: str
    fps: float
    number: int = 0

    def __post_init__(self):
        smpte_to_frame(self.label, self.fps)  # ValueError now, not at the first frame

    @property
    def drop_frame(self) -> bool:
        return ";" in self.label

    def at(self, number: int) -> str:
        """The label of frame ``number`` of the source."""
        start = smpte_to_frame(self.label, self.fps)
        return frame_to_smpte(start + int(number) - self.number, self.fps, self.drop_frame)

    def to_dict(self) -> dict:
        return {"label": self.label, "fps": self.fps, "number": self.number, "drop_frame": self.drop_frame}


def parse_timecode(text: str | None, fps: float, number: int = 0) -> Timecode | None:
    """A container's ``timecode`` tag as a ``Timecode`` of frame ``number``; None when absent or
    not a valid label at ``fps`` (a tag is a hint, never a reason to refuse the input)."""
    if not text:
        return None
    try:
        return Timecode(text.strip(), float(fps), number)
    except ValueError:
        return None

"""Snippet plans: the dilated rolling kernel of SPEC.md and the refinement schedule.

Snippet ``i`` of a group with dilation ``d`` and length ``L`` holds frames
``i, i+d, ..., i+(L-1)d``; a group over ``T`` frames has ``T-(L-1)d`` snippets.

A group may cover one shot of a longer edit: ``offset`` is the shot's first frame, so
snippet indices stay per shot (``0 .. count-1``) while the frame indices a group hands
out (``frames``, ``frame_table``, ``snippets_touching``) are global. ``offset=0`` (the
default, a whole video) is the original plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SnippetGroup:
    """All snippets of one dilation: ``count`` snippets of ``length`` frames spaced ``dilation`` apart.

    The group covers frames ``[offset, offset + num_frames)`` (one shot; the whole video when
    ``offset`` is 0). Snippet indices are local to the group, frame indices are global.
    ``series``: the index of the configured dilation it stands for: the run store keeps the
    snippets of one series in one array, indexed by their global start frame.
    """

    dilation: int
    length: int
    num_frames: int
    offset: int = 0
    series: int = 0

    @property
    def count(self) -> int:
        return max(0, self.num_frames - (self.length - 1) * self.dilation)

    @property
    def stop(self) -> int:
        """One past the last frame the group covers (global)."""
        return self.offset + self.num_frames

    def frames(self, index: int) -> list[int]:
        """Global frame indices of snippet ``index``."""
        return [self.offset + index + j * self.dilation for j in range(self.length)]

    def frame_table(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """``[n, length]`` int64 global frame indices of snippets ``[first, stop)`` (default: all)."""
        stop = self.count if stop is None else stop
        return (self.offset + np.arange(first, stop))[:, None] + self.dilation * np.arange(self.length)[None, :]

    def snippets_touching(self, first: int, stop: int, slot: int) -> tuple[int, int]:
        """Range ``[lo, hi)`` of snippets whose slot ``slot`` falls in global frames ``[first, stop)``."""
        lo = max(0, first - self.offset - slot * self.dilation)
        hi = min(self.count, stop - self.offset - slot * self.dilation)
        return lo, max(lo, hi)


def cap_dilation(dilation: int, length: int, num_frames: int) -> int:
    """SPEC dilation cap: ``g = int(T / L) - 1``; if ``g < d`` then ``d = g``."""
    g = int(num_frames / length) - 1
    return g if g < dilation else dilation


def uncovered_frames(group: SnippetGroup) -> int:
    """Number of frames no snippet of ``group`` contains."""
    covered = np.zeros(group.num_frames, dtype=bool)
    covered[group.frame_table().ravel() - group.offset] = True
    return int((~covered).sum())


def plan_snippets(num_frames: int, dilations: tuple[int, ...], lengths: tuple[int, ...],
                  cap: bool, unit: str = "video") -> tuple[list[SnippetGroup], list[str]]:
    """Build the snippet groups for a ``num_frames`` video; returns groups and user-facing notes.

    Short videos shorten snippets (``L <= T``) and drop dilations that no longer fit,
    saying so in the notes; uncovered frames are only a note, as in SPEC.md. ``unit`` is
    the word the notes use for what is planned (``"shot"`` when planning one shot).
    """
    notes: list[str] = []
    groups: list[SnippetGroup] = []
    for series, (d, length) in enumerate(zip(dilations, lengths)):
        if length > num_frames:
            notes.append(f"snippet length {length} shortened to {num_frames} for a {num_frames}-frame {unit}")
            length = num_frames
        if cap and d > 1:
            capped = cap_dilation(d, length, num_frames)
            if capped != d:
                notes.append(f"dilation {d} capped to {capped} for {num_frames} frames")
            d = capped
        group = SnippetGroup(dilation=d, length=length, num_frames=num_frames, series=series)
        if d < 1 or group.count < 1:
            notes.append(f"dilation {d} dropped: no snippet of length {length} fits in {num_frames} frames")
            continue
        missing = uncovered_frames(group)
        if missing:
            notes.append(f"dilation {d} leaves {missing} frame(s) uncovered")
        groups.append(group)
    return groups, notes


def refinement_dilations(steps: int, start_dilation: int, length: int, num_frames: int,
                         cap: bool) -> list[int]:
    """Dilation of each refinement step, coarse to fine: ``int((1 - i/R) * (start - 1)) + 1``."""
    if cap:
        start_dilation = max(1, cap_dilation(start_dilation, length, num_frames))
    return [int((1 - i / steps) * (start_dilation - 1)) + 1 for i in range(steps)]

"""Shots of a clip and each shot's snippet plan: a cut at frame ``c`` starts a new shot at ``c``.

Every shot is planned as a video of its own (``plan_shot_snippets``), with global frame
indices (``SnippetGroup.offset``), so no snippet spans a cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..snippets import SnippetGroup, plan_snippets, refinement_dilations




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

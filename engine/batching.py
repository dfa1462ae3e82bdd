"""Where snippets are batched: the snippet plan cut into work units and UNet batches.

A unit holds the snippets of every group (every shot and dilation) whose global start
frame lies in ``[first, stop)``; it writes one shard of each series' arrays. Inside a unit,
snippets of any dilation share a batch when they have the same length, in start order, so
the RGB latents they read form a sliding window in time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import layout
from .snippets import SnippetGroup


@dataclass(frozen=True)
class SnippetBatch:
    """One UNet call: ``members`` are ``(group index, snippet index)`` pairs of equal length."""

    length: int
    members: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SnippetUnit:
    """The snippets starting in frames ``[first, stop)`` of every group, cut into batches."""

    first: int
    stop: int
    batches: tuple[SnippetBatch, ...]

    @property
    def id(self) -> str:
        return layout.chunk_unit(self.first)

    @property
    def size(self) -> int:
        return sum(len(b.members) for b in self.batches)


def plan_units(groups: list[SnippetGroup], unit: int, batch_size: int) -> list[SnippetUnit]:
    """Every snippet of ``groups`` once: units of ``unit`` global start frames, batches of at most
    ``batch_size``. Units without snippets (a stretch of very short shots) are left out."""
    last = max(g.offset + g.count for g in groups)
    units = []
    for first in range(0, last, unit):
        stop = min(first + unit, last)
        batches = []
        for length in sorted({g.length for g in groups}):
            queue = sorted((g.offset + i, k, i) for k, g in enumerate(groups) if g.length == length
                           for i in range(max(0, first - g.offset), min(stop - g.offset, g.count)))
            batches += [SnippetBatch(length, tuple((k, i) for _, k, i in queue[at:at + batch_size]))
                        for at in range(0, len(queue), batch_size)]
        if batches:
            units.append(SnippetUnit(first, stop, tuple(batches)))
    return units


def default_batch_size(device_type: str, free_bytes: int | None, frame_pixels: int) -> int:
    """Snippets per UNet call from free device memory (about 1.5 GB per 768x432 snippet in fp16)."""
    if device_type != "cuda" or not free_bytes:
        return 4
    per_snippet = 1.5e9 * frame_pixels / (768 * 432)
    return int(max(1, min(64, free_bytes * 0.6 // per_snippet)))

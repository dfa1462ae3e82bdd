"""Where snippets are batched: every shot's snippets as one stream of UNet batches.

The stream walks shots in order and, inside a shot, snippets by start frame (then by
dilation): the RGB latents they read form a sliding window in time. A batch holds snippets
of one length; it is filled across shot boundaries, so a film of short shots still gives
full UNet batches. A batch of a length no shot has used for ``FLUSH_AFTER_SHOTS`` shots
(the snippets of a shot of one or two frames) is sent then, so no shot waits long for it.

Work units are runs of consecutive batches (``SnippetUnit``); how many batches a unit takes
is decided while running (about a minute of device work, see ``engine.unit_sizing``) and
recorded with the unit. The depth of a snippet never depends on which unit computed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .snippets import SnippetGroup

FLUSH_AFTER_SHOTS = 2


@dataclass(frozen=True)
class SnippetBatch:
    """One UNet call: ``members`` are ``(group index, snippet index)`` pairs of equal ``length``."""

    length: int
    members: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SnippetUnit:
    """Batches ``[first, stop)`` of the stream: computed and recorded together."""

    first: int
    stop: int


def plan_batches(shot_groups: list[list[int]], groups: list[SnippetGroup], batch_size: int) -> list[SnippetBatch]:
    """Every snippet of ``groups`` once, in stream order (see the module docstring).

    ``shot_groups[k]``: the indices into ``groups`` of shot ``k``'s groups.
    """
    batches: list[SnippetBatch] = []
    open_batches: dict[int, list[tuple[int, int]]] = {}  # length -> members
    last_used: dict[int, int] = {}  # length -> the last shot with snippets of that length

    def send(length: int) -> None:
        batches.append(SnippetBatch(length, tuple(open_batches.pop(length))))

    for shot, members in enumerate(shot_groups):
        for start, k, i in sorted((groups[k].offset + i, k, i) for k in members for i in range(groups[k].count)):
            length = groups[k].length
            open_batches.setdefault(length, []).append((k, i))
            last_used[length] = shot
            if len(open_batches[length]) == batch_size:
                send(length)
        for length in sorted(open_batches):
            if last_used[length] <= shot - FLUSH_AFTER_SHOTS:
                send(length)
    for length in sorted(open_batches):
        send(length)
    return batches


def last_batch_of_shots(batches: list[SnippetBatch], shot_of_group: list[int], shots: int) -> np.ndarray:
    """``[shots]``: the index of the last batch holding a snippet of each shot (-1: a shot without snippets)."""
    last = np.full(shots, -1, dtype=np.int64)
    for b, batch in enumerate(batches):
        for k, _ in batch.members:
            last[shot_of_group[k]] = b
    return last


def default_batch_size(device_type: str, free_bytes: int | None, frame_pixels: int) -> int:
    """Snippets per UNet call from free device memory (about 1.5 GB per 768x432 snippet in fp16)."""
    if device_type != "cuda" or not free_bytes:
        return 4
    per_snippet = 1.5e9 * frame_pixels / (768 * 432)
    return int(max(1, min(64, free_bytes * 0.6 // per_snippet)))

"""Time chunks as work units: the loop every chunkwise stage walks (merge, normalize, refine, export)."""

from __future__ import annotations

from typing import Callable, Iterator

from ...storage import layout
from ...storage.run_store import RunStore
from ..progress import StageTimer


def time_chunks(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    """``[(first, stop), ...]`` covering ``[0, num_frames)`` in steps of ``chunk``."""
    return [(a, min(a + chunk, num_frames)) for a in range(0, num_frames, chunk)]


def pending_chunks(store: RunStore, stage: str, timer: StageTimer, num_frames: int, chunk: int,
                   unit_of: Callable[[int], str] = layout.chunk_unit) -> Iterator[tuple[int, int, str]]:
    """Yield ``(first, stop, unit)`` for chunks of ``stage`` not yet done; done ones count as reused.

    Unit ids are ``unit_of(first)``; the caller writes the chunk, then records the unit.
    """
    for first, stop in time_chunks(num_frames, chunk):
        unit = unit_of(first)
        if store.is_done(stage, unit):
            timer.advance(stop - first, reused=True)
        else:
            yield first, stop, unit

"""Merge stage: chunkwise mean of the co-aligned observations of each frame, then [-1, 1].

``merged [T, H, W]`` holds ``mean_k(s_k * (x_k - global_min) + t_k)`` over the
observations of each frame; a second chunkwise pass writes ``dst`` (``depth`` or
``aligned``) as ``(merged - min) / (max - min) * 2 - 1`` with min/max over all frames.
Units are time chunks of ``MERGE_CHUNK`` frames.
"""

from __future__ import annotations

import numpy as np

from ...storage import layout
from ...storage.run_store import RunStore
from .chunks import pending_chunks
from ..progress import Progress
from ..snippets import SnippetGroup

MERGE_CHUNK = 8


def merge_frames(snippets: list, groups: list[SnippetGroup], scales: list[np.ndarray],
                 shifts: list[np.ndarray], global_min: float, first: int, stop: int) -> np.ndarray:
    """Mean of the aligned observations of frames ``[first, stop)``: float64 ``[stop-first, H, W]``.

    ``snippets``: one ``[N_g, L_g, H, W]`` array-like per group; frames no snippet observes are 0.
    """
    h, w = snippets[0].shape[-2:]
    total = np.zeros((stop - first, h, w), dtype=np.float64)
    count = np.zeros(stop - first, dtype=np.int64)
    for arr, g, s, t in zip(snippets, groups, scales, shifts):
        for slot in range(g.length):
            lo, hi = g.snippets_touching(first, stop, slot)
            if hi <= lo:
                continue
            x = np.asarray(arr[lo:hi, slot], dtype=np.float64)
            at = np.arange(lo, hi) + slot * g.dilation - first
            total[at] += s[lo:hi, None, None] * (x - global_min) + t[lo:hi, None, None]
            count[at] += 1
    return total / np.maximum(count, 1)[:, None, None]


def merge(store: RunStore, groups: list[SnippetGroup], scales: list[np.ndarray], shifts: list[np.ndarray],
          global_min: float, progress: Progress) -> tuple[float, float]:
    """Write ``merged`` chunk by chunk; returns (min, max) over the whole video."""
    num_frames = store.info["num_frames"]
    h, w = store.info["size"]
    out = store.require(layout.MERGED, (num_frames, h, w), (MERGE_CHUNK, h, w))
    snippets = [store.array(layout.snippet_depth(k)) for k in range(len(groups))]
    timer = progress.stage(layout.MERGE, num_frames)
    for first, stop, unit in pending_chunks(store, layout.MERGE, timer, num_frames, MERGE_CHUNK):
        frames = merge_frames(snippets, groups, scales, shifts, global_min, first, stop).astype(np.float32)
        out[first:stop] = frames
        store.mark_done(layout.MERGE, unit, {"min": float(frames.min()), "max": float(frames.max())})
        timer.advance(stop - first)
    records = store.done_units(layout.MERGE).values()
    return min(r["min"] for r in records), max(r["max"] for r in records)


def normalize(store: RunStore, dst: str, lo: float, hi: float, progress: Progress) -> None:
    """Write ``dst = (merged - lo) / (hi - lo) * 2 - 1`` chunk by chunk (constant video -> 0)."""
    src = store.array(layout.MERGED)
    out = store.require(dst, src.shape, src.chunks)
    span = hi - lo
    timer = progress.stage(layout.NORMALIZE, src.shape[0])
    for first, stop, unit in pending_chunks(store, layout.NORMALIZE, timer, src.shape[0], src.chunks[0]):
        x = np.asarray(src[first:stop], dtype=np.float64)
        out[first:stop] = ((x - lo) / span * 2 - 1 if span > 0 else np.zeros_like(x)).astype(np.float32)
        store.mark_done(layout.NORMALIZE, unit)
        timer.advance(stop - first)

"""Merge stage: chunkwise mean of the co-aligned observations of each frame, then [-1, 1].

``merged [T, H, W]`` holds ``mean_k(s_k * (x_k - global_min) + t_k)`` over the
observations of each frame; a second chunkwise pass writes ``dst`` (``depth`` or
``aligned``) as ``(merged - min) / (max - min) * 2 - 1`` with min/max over all frames.
Units are time chunks of ``MERGE_CHUNK`` frames.

Arithmetic: float64 by default. With an ``exact_dtype`` (``--reproduce``) every step runs
in that torch dtype in the published order: min shift, affine with the scale and shift
cast to it, mean of the stacked observations (group order, then snippet order), and the
normalization as ``x -= min; x /= max; x * 2 - 1``.
"""

from __future__ import annotations

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import RunStore
from ..model import TORCH_DTYPES
from ..progress import Progress
from ..snippets import SnippetGroup
from .chunks import pending_chunks

MERGE_CHUNK = 8



def merge_frames(snippets: list, groups: list[SnippetGroup], scales: list[np.ndarray],
                 shifts: list[np.ndarray], global_min: float, first: int, stop: int,
                 exact_dtype: str | None = None) -> np.ndarray:
    """Mean of the aligned observations of frames ``[first, stop)``: float64 ``[stop-first, H, W]``.

    ``snippets``: one ``[N_g, L_g, H, W]`` array-like per group; frames no snippet observes are 0.
    """
    h, w = snippets[0].shape[-2:]
    observations: list[list] = [[] for _ in range(stop - first)]
    total = np.zeros((stop - first, h, w), dtype=np.float64)
    count = np.zeros(stop - first, dtype=np.int64)
    for arr, g, s, t in zip(snippets, groups, scales, shifts):
        for slot in reversed(range(g.length)):  # for one frame: snippets in ascending order
            lo, hi = g.snippets_touching(first, stop, slot)
            if hi <= lo:
                continue
            at = np.arange(lo, hi) + slot * g.dilation - first
            if exact_dtype is None:
                x = np.asarray(arr[lo:hi, slot], dtype=np.float64)
                total[at] += s[lo:hi, None, None] * (x - global_min) + t[lo:hi, None, None]
                count[at] += 1
                continue
            dtype = TORCH_DTYPES[exact_dtype]
            x = torch.from_numpy(np.asarray(arr[lo:hi, slot])).to(dtype)
            shifted = x - torch.tensor(global_min, dtype=dtype)
            scale = torch.from_numpy(s[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            shift = torch.from_numpy(t[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            for frame, value in zip(at, shifted * scale + shift):
                observations[frame].append(value)
    if exact_dtype is None:
        return total / np.maximum(count, 1)[:, None, None]
    return np.stack([torch.stack(obs).mean(0).double().numpy() if obs else np.zeros((h, w))
                     for obs in observations])


def normalized(x: np.ndarray, lo: float, hi: float, exact_dtype: str | None = None) -> np.ndarray:
    """``(x - lo) / (hi - lo) * 2 - 1`` as float32 (a constant video gives 0), in float64 or in ``exact_dtype``."""
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    if exact_dtype is None:
        return ((np.asarray(x, dtype=np.float64) - lo) / (hi - lo) * 2 - 1).astype(np.float32)
    dtype = TORCH_DTYPES[exact_dtype]
    low, high = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    shifted = torch.from_numpy(np.asarray(x)).to(dtype) - low
    return (shifted / (high - low) * 2.0 - 1.0).float().numpy()


def merge(store: RunStore, groups: list[SnippetGroup], scales: list[np.ndarray], shifts: list[np.ndarray],
          global_min: float, progress: Progress, exact_dtype: str | None = None) -> tuple[float, float]:
    """Write ``merged`` chunk by chunk; returns (min, max) over the whole video."""
    num_frames = store.info["num_frames"]
    h, w = store.info["depth_size"]
    out = store.require(layout.MERGED, (num_frames, h, w), (MERGE_CHUNK, h, w))
    snippets = [store.array(layout.snippet_depth(k)) for k in range(len(groups))]
    timer = progress.stage(layout.MERGE, num_frames)
    for first, stop, unit in pending_chunks(store, layout.MERGE, timer, num_frames, MERGE_CHUNK):
        frames = merge_frames(snippets, groups, scales, shifts, global_min, first, stop,
                              exact_dtype).astype(np.float32)
        out[first:stop] = frames
        store.mark_done(layout.MERGE, unit, {"min": float(frames.min()), "max": float(frames.max())})
        timer.advance(stop - first)
    records = store.done_units(layout.MERGE).values()
    return min(r["min"] for r in records), max(r["max"] for r in records)


def normalize(store: RunStore, dst: str, lo: float, hi: float, progress: Progress,
              exact_dtype: str | None = None) -> None:
    """Write ``dst = (merged - lo) / (hi - lo) * 2 - 1`` chunk by chunk (constant video -> 0)."""
    src = store.array(layout.MERGED)
    out = store.require(dst, src.shape, src.chunks)
    timer = progress.stage(layout.NORMALIZE, src.shape[0])
    for first, stop, unit in pending_chunks(store, layout.NORMALIZE, timer, src.shape[0], src.chunks[0]):
        out[first:stop] = normalized(src[first:stop], lo, hi, exact_dtype)
        store.mark_done(layout.NORMALIZE, unit)
        timer.advance(stop - first)

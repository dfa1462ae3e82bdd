"""Frame windows over the sampled snippet maps: the data layout both solvers read.

Every data pass walks the samples in frame windows. Below the memory budget the windows
are kept after the first pass; above it they are re-read in chunks along the snippet axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from .graph import SnippetGraph

WINDOW_VALUES = 1 << 18  # floats per [columns, frames, pixels] work tensor (cache-sized)


@dataclass
class Window:
    """Observations of frames ``[f0, f1)``: ``x`` ``[columns, F, P]`` float32 min-shifted
    maps (zero where missing), ``ids`` ``[columns, F]``, ``mask`` ``[columns, F]`` float32
    (None when every column observes every frame), ``count`` ``[F]`` observations per frame."""

    f0: int
    f1: int
    x: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor | None
    count: torch.Tensor


class Observations:
    """Frame windows over the sampled snippet maps: kept after the first pass when they
    fit in half the memory budget, else re-read in chunks on every pass.

    ``samples``: per group ``[N_g, L_g, P_h, P_w]`` array-likes, sliced along axis 0 only;
    ``pixel_step``: keep every ``pixel_step``-th pixel of the flattened maps (coarse level);
    ``shift_dtype``: compute the min shift ``x - global_min`` in this dtype (the published
    code shifts in its compute dtype) instead of float32.
    """

    def __init__(self, samples: Sequence, graph: SnippetGraph, global_min: float, memory_budget: int,
                 pixel_step: int = 1, shift_dtype: torch.dtype | None = None):
        self.samples, self.graph, self.global_min = list(samples), graph, float(global_min)
        self.shift_dtype = shift_dtype
        map_shape = tuple(self.samples[0].shape[2:])
        for g, (x, n, length) in enumerate(zip(self.samples, graph.counts, graph.lengths)):
            if tuple(x.shape) != (n, length) + map_shape or len(map_shape) != 2:
                raise ValueError(f"samples[{g}] has shape {tuple(x.shape)}, expected {(n, length) + map_shape} "
                                 f"for {graph.num_frames} frames, dilation {graph.dilations[g]}")
        raw_pixels = int(np.prod(map_shape))
        self.pixel_step = pixel_step
        self.pixels = len(range(0, raw_pixels, pixel_step))
        self.cacheable = 2 * 4 * graph.num_cols * self.pixels * graph.num_frames <= memory_budget
        self.cached: list[Window] | None = None
        # a chunk reads its frames plus a halo of (L-1)d earlier snippets per group: at most a
        # sixteenth of the budget (once the budget exceeds the halo)
        halo = max((n - 1) * d for n, d in zip(graph.lengths, graph.dilations))
        self.window = max(1, WINDOW_VALUES // (graph.num_cols * self.pixels))
        chunk = memory_budget // (16 * 4 * graph.num_cols * raw_pixels) - halo
        self.chunk = max(1, chunk // self.window) * self.window  # whole windows: same windows cached or not

    def __iter__(self) -> Iterator[Window]:
        if self.cached is not None:
            yield from self.cached
            return
        kept = []
        for c0 in range(0, self.graph.num_frames, self.chunk):
            for win in self._read_chunk(c0, min(self.graph.num_frames, c0 + self.chunk)):
                if self.cacheable:
                    kept.append(win)
                yield win
        if self.cacheable:
            self.cached = kept

    def _edges(self, c0: int, c1: int) -> list[int]:
        """Window edges in ``[c0, c1]``: multiples of ``window`` and where coverage changes,
        so the windows (and float sums) do not depend on the chunking."""
        g = self.graph
        inner = set(range(c0 - c0 % self.window + self.window, c1, self.window)) | {g.full_lo, g.full_hi}
        return sorted({c0, c1} | {b for b in inner if c0 < b < c1})

    def _read_chunk(self, c0: int, c1: int) -> Iterator[Window]:
        g = self.graph
        blocks, starts = [], []
        for x, n, length, d in zip(self.samples, g.counts, g.lengths, g.dilations):
            lo, hi = max(0, c0 - (length - 1) * d), min(n, c1)
            block = np.asarray(x[lo:hi], dtype=np.float32).reshape(hi - lo, length, -1)[..., ::self.pixel_step]
            if self.shift_dtype is not None:  # shifted here, rounded to shift_dtype
                low = torch.tensor(self.global_min, dtype=self.shift_dtype)
                block = (torch.from_numpy(np.ascontiguousarray(block)).to(self.shift_dtype) - low).float().numpy()
            blocks.append(block)  # may view the caller's array: only read
            starts.append(lo)
        shift = self.global_min if self.shift_dtype is None else 0.0
        edges = self._edges(c0, c1)
        for f0, f1 in zip(edges[:-1], edges[1:]):
            ids = g.ids(f0, f1)
            valid = ids < g.num_snippets
            full = bool(valid.all())
            x = (np.empty if full else np.zeros)((g.num_cols, f1 - f0, self.pixels), dtype=np.float32)
            for o in range(g.num_cols):
                grp, slot, delay = g.col_group[o], g.col_slot[o], g.col_delay[o]
                i0, i1 = max(f0 - delay, 0), min(f1 - delay, g.col_count[o])
                if i1 > i0:
                    np.subtract(blocks[grp][i0 - starts[grp]:i1 - starts[grp], slot], shift,
                                out=x[o, i0 + delay - f0:i1 + delay - f0])
            yield Window(f0, f1, torch.from_numpy(x), torch.from_numpy(ids),
                          None if full else torch.from_numpy(valid.astype(np.float32)),
                          torch.from_numpy(valid.sum(0).astype(np.float32)))


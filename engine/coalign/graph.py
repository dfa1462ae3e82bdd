"""The snippet graph: group sizes, global snippet ids and observation columns.

Frame ``f`` is observed by every (snippet, slot) pair holding it: slot ``j`` of snippet
``i`` of a group with dilation ``d`` is frame ``i + j*d``. Observations are laid out in
*columns* ``o = (group, slot)``: within a column consecutive frames are consecutive
snippets, so any window of frames is a set of contiguous slices of the sample arrays.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

REG_SCALE = 0.1  # weight of mean(max(0, 1 - s)^2) per group
REG_SHIFT = 10.0  # weight of mean(t^2) per group


class SnippetGraph:
    """Geometry of the snippet graph of one video: ``counts[g]`` snippets per group, global
    snippet ids (group offsets), and one observation column per (group, slot)."""

    def __init__(self, dilations: Sequence[int], lengths: Sequence[int], num_frames: int):
        if len(dilations) != len(lengths) or not dilations:
            raise ValueError(f"{len(dilations)} dilations for {len(lengths)} snippet lengths")
        self.num_frames = int(num_frames)
        self.dilations, self.lengths = [int(d) for d in dilations], [int(n) for n in lengths]
        self.counts = [self.num_frames - (n - 1) * d for d, n in zip(self.dilations, self.lengths)]
        if min(self.counts) < 1 or min(self.dilations) < 1 or min(self.lengths) < 1:
            raise ValueError(f"no snippet fits: dilations {self.dilations}, lengths {self.lengths}, "
                             f"{self.num_frames} frames")
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.num_snippets = int(self.offsets[-1])
        cols = [(g, j) for g in range(len(self.counts)) for j in range(self.lengths[g])]
        self.num_cols = len(cols)
        self.col_group = np.array([g for g, _ in cols], dtype=np.int64)
        self.col_slot = np.array([j for _, j in cols], dtype=np.int64)
        self.col_delay = np.array([j * self.dilations[g] for g, j in cols], dtype=np.int64)
        self.col_count = np.array([self.counts[g] for g, _ in cols], dtype=np.int64)
        # frames [full_lo, full_hi) have an observation in every column
        self.full_lo = int(self.col_delay.max())
        self.full_hi = max(self.full_lo, int((self.col_delay + self.col_count).min()))

    def ids(self, f0: int, f1: int) -> np.ndarray:
        """``[columns, f1-f0]`` global snippet ids observing frames ``[f0, f1)``;
        ``num_snippets`` (a parameter slot held at zero) where a column has none."""
        index = np.arange(f0, f1)[None, :] - self.col_delay[:, None]
        valid = (index >= 0) & (index < self.col_count[:, None])
        return np.where(valid, index + self.offsets[self.col_group][:, None], self.num_snippets)

    def split(self, vector: np.ndarray) -> list[np.ndarray]:
        """Per-group pieces of a ``[num_snippets]`` vector."""
        return [vector[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def per_snippet(self) -> np.ndarray:
        """``[num_snippets]`` weight ``1 / N_g`` of each snippet in its group's mean."""
        return np.repeat(1.0 / np.asarray(self.counts, np.float64), self.counts)

    def regularizer(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """SPEC regularizer at ``theta = [s, t]`` and its gradient (float64 ``[2K]``)."""
        k, per = self.num_snippets, self.per_snippet()
        low = np.maximum(0.0, 1.0 - theta[:k])
        value = float(np.sum(per * (REG_SCALE * low ** 2 + REG_SHIFT * theta[k:] ** 2)))
        return value, np.concatenate([-2.0 * REG_SCALE * per * low, 2.0 * REG_SHIFT * per * theta[k:]])


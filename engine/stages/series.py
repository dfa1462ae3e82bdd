"""Views of the series arrays (one per configured dilation, row = global start frame) as one group's snippets."""

from __future__ import annotations

import numpy as np


class SeriesRows:
    """Rows ``[offset, offset + count)`` and slots ``[:length]`` of a series array: one group's
    ``[N_g, L_g, ...]`` snippets, read by local snippet index (``x[a:b]`` or ``x[a:b, slot]``)."""

    def __init__(self, array, offset: int, count: int, length: int):
        self.array, self.offset, self.length = array, offset, length
        self.shape = (count, length, *array.shape[2:])

    def __getitem__(self, selection) -> np.ndarray:
        rows, slot = selection if isinstance(selection, tuple) else (selection, None)
        first, stop, _ = rows.indices(self.shape[0])
        rows = slice(self.offset + first, self.offset + stop)
        return np.asarray(self.array[rows, :self.length] if slot is None else self.array[rows, slot])

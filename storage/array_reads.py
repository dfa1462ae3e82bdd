"""Reading large arrays along axis 0: row lookups through a small chunk cache, and value ranges."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class RowCache:
    """Serve ``rows(indices)`` of ``array`` reading ``chunk`` rows at a time (e.g. a shard), keeping
    ``capacity`` of those blocks. Reads in start order form a sliding window, so each block is
    decoded about once.
    """

    def __init__(self, array, chunk: int, capacity: int):
        self.array = array
        self.chunk = chunk
        self.capacity = max(1, capacity)
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()

    def _get_chunk(self, c: int) -> np.ndarray:
        if c in self._chunks:
            self._chunks.move_to_end(c)
        else:
            self._chunks[c] = self.array[c * self.chunk:(c + 1) * self.chunk]
            if len(self._chunks) > self.capacity:
                self._chunks.popitem(last=False)
        return self._chunks[c]

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """``array[indices]`` for any int index array (shape ``indices.shape + row_shape``)."""
        flat = np.asarray(indices).ravel()
        out = np.empty((flat.size, *self.array.shape[1:]), dtype=self.array.dtype)
        for c in np.unique(flat // self.chunk):
            sel = flat // self.chunk == c
            out[sel] = self._get_chunk(int(c))[flat[sel] - c * self.chunk]
        return out.reshape(*np.shape(indices), *self.array.shape[1:])


def value_range(array, max_bytes: int = 1 << 22) -> tuple[float, float]:
    """(min, max) of an array-like (numpy, zarr), read in slices along axis 0 of at most ``max_bytes``
    (whole shards of a ``CheckedArray``)."""
    row_bytes = max(1, array.dtype.itemsize * int(np.prod(array.shape[1:])))
    unit = getattr(array, "unit", 1)
    step = max(unit, max_bytes // row_bytes // unit * unit)
    lo, hi = np.inf, -np.inf
    for first in range(0, array.shape[0], step):
        part = np.asarray(array[first:first + step])
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return lo, hi

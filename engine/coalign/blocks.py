"""Cholesky factor of a block-tridiagonal SPD matrix, built and applied block by block.

``M`` has diagonal blocks ``D_j`` and sub-diagonal blocks ``C_j = M[j+1, j]``. Factoring in
order, ``L_j L_j^T = D_j - F_{j-1} F_{j-1}^T`` and ``F_j = C_j L_j^{-T}``; a solve sweeps the
blocks forward (``L y = b``) and back (``L^T x = y``). Only one block pair is needed at a
time, so the factor can live on disk: ``BlockFile`` keeps the pairs in memory, or in a
file read back with positioned reads once they exceed their memory budget. The arithmetic
is the same either way, so the solution is too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from scipy import linalg


class BlockFile:
    """An append-then-read store of float64 arrays: in memory up to ``budget`` bytes, else in
    a file under ``folder`` (a temporary folder when None), removed by ``close``."""

    def __init__(self, budget: int, folder: str | Path | None = None):
        self.budget, self.folder = budget, folder
        self.arrays: list[np.ndarray] | None = []
        self.index: list[tuple[int, tuple[int, ...]]] = []  # offset and shape of each array in the file
        self.held = 0
        self.fd: int | None = None
        self.path: Path | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def append(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=np.float64)
        if self.arrays is not None and self.held + array.nbytes > self.budget:
            self._spill()
        if self.arrays is not None:
            self.arrays.append(array)
            self.held += array.nbytes
            return
        offset = self.index[-1][0] + 8 * int(np.prod(self.index[-1][1])) if self.index else 0
        data = array.tobytes()
        written = 0
        while written < len(data):
            written += os.pwrite(self.fd, data[written:], offset + written)
        self.index.append((offset, array.shape))

    def _spill(self) -> None:
        if self.folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rdengine-coalign-")
            folder = Path(self._tmp.name)
        else:
            folder = Path(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"factor-{os.getpid()}-{id(self)}.bin"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        held, self.arrays = self.arrays, None
        for array in held:
            self.append(array)

    @property
    def spilled(self) -> bool:
        return self.arrays is None

    def __getitem__(self, i: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[i]
        offset, shape = self.index[i]
        size = 8 * int(np.prod(shape))
        data = os.pread(self.fd, size, offset)
        return np.frombuffer(data, dtype=np.float64).reshape(shape)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.path.unlink(missing_ok=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class BlockCholesky:
    """``L`` of ``M = L L^T`` for a block-tridiagonal SPD ``M``, fed one block column at a time.

    ``add(D_j, C_j)``: the diagonal block ``D_j`` (``[n_j, n_j]``, symmetric) and the coupling
    ``C_j = M[j+1, j]`` (``[n_{j+1}, n_j]``; None for the last block), in order. ``solve(b)``
    returns ``M^-1 b`` for ``b`` of the concatenated block sizes.
    """

    def __init__(self, budget: int, folder: str | Path | None = None):
        self.blocks = BlockFile(budget, folder)  # L_0, F_0, L_1, F_1, ...
        self.sizes: list[int] = []
        self._carry: np.ndarray | None = None  # F_{j-1}, to update the next diagonal block

    def add(self, diagonal: np.ndarray, coupling: np.ndarray | None) -> None:
        schur = diagonal if self._carry is None else diagonal - self._carry @ self._carry.T
        lower = linalg.cholesky(schur, lower=True, check_finite=False)
        below = np.zeros((0, len(diagonal))) if coupling is None else \
            linalg.solve_triangular(lower, coupling.T, lower=True, check_finite=False).T  # C_j L_j^{-T}
        self.blocks.append(lower)
        self.blocks.append(below)
        self.sizes.append(len(diagonal))
        self._carry = below

    @property
    def spilled(self) -> bool:
        return self.blocks.spilled

    def solve(self, b: np.ndarray) -> np.ndarray:
        edges = np.concatenate([[0], np.cumsum(self.sizes)])
        y = np.empty_like(b)
        previous = None
        for j in range(len(self.sizes)):  # forward: L_j y_j = b_j - F_{j-1} y_{j-1}
            rhs = b[edges[j]:edges[j + 1]]
            if previous is not None:
                rhs = rhs - self.blocks[2 * j - 1] @ previous
            previous = y[edges[j]:edges[j + 1]] = linalg.solve_triangular(self.blocks[2 * j], rhs, lower=True,
                                                                           check_finite=False)
        x = np.empty_like(b)
        following = None
        for j in reversed(range(len(self.sizes))):  # back: L_j^T x_j = y_j - F_j^T x_{j+1}
            rhs = y[edges[j]:edges[j + 1]]
            if following is not None:
                rhs = rhs - self.blocks[2 * j + 1].T @ following
            following = x[edges[j]:edges[j + 1]] = linalg.solve_triangular(self.blocks[2 * j], rhs, lower=True,
                                                                            trans="T", check_finite=False)
        return x

    def close(self) -> None:
        self.blocks.close()

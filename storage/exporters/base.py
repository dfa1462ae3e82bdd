"""What every exporter shares: resumable, chunkwise writing of a depth video ``float32 [T, H, W]``.

Every exporter takes depth in time chunks (``write(first, depth, rgb)``) so memory stays
bounded; files are written under temporary names and renamed when complete.

Resumable exports: an exporter gets a ``Units`` (completion records, e.g. the run store's
``export`` stage) and a ``key`` naming its parameters. Chunked formats record each time
chunk after its bytes are written and skip recorded chunks on a rerun; others are redone
whole when not complete. A final ``done`` record is written only after the output sits
under its final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import layout


class Units(Protocol):
    """Completion records an exporter uses (a run store stage)."""

    def is_done(self, unit: str) -> bool: ...

    def mark_done(self, unit: str) -> None: ...

    def clear(self, prefix: str) -> None: ...


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Exporter:
    """Base: ``needs(first)`` says whether chunk ``first`` must be written on this run."""

    fmt = "?"

    def __init__(self, path: Path, units: Units | None, key: str):
        self.path, self.units, self.key = path, units, key
        self.complete = bool(units and units.is_done(self.unit("done")) and path.exists())

    def unit(self, part: str) -> str:
        """This output's record for ``part`` (a chunk unit id, or ``done``)."""
        return layout.export_unit(self.fmt, self.key, part)

    def chunk_done(self, first: int) -> bool:
        return bool(self.units and self.units.is_done(self.unit(layout.chunk_unit(first))))

    def needs(self, first: int) -> bool:
        return not self.complete

    def _mark(self, part: str) -> None:
        if self.units is not None:
            self.units.mark_done(self.unit(part))

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


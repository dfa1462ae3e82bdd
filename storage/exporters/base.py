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

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .. import layout
from ..files import publish, replace_atomically, temporary_target
from . import DEFAULT_FRAME_DIGITS, frame_file_pattern, frame_path, frame_template
from .ledger import Ledger

DEFAULT_TEMPLATE = frame_template(DEFAULT_FRAME_DIGITS)


class Units(Protocol):
    """Completion records an exporter uses (a run store stage)."""

    def is_done(self, unit: str) -> bool: ...

    def mark_done(self, unit: str) -> None: ...

    def clear(self, prefix: str) -> None: ...


class Exporter:
    """Base: ``needs(first)`` says whether chunk ``first`` must be written on this run."""

    fmt = "?"
    needs_rgb = False  # whether ``write`` needs the RGB frames (the export stage decodes them only then)

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
        """Finish the output (final name, ``done`` record)."""

    def release(self) -> None:
        """Let go of open files without finishing (another process finishes the output)."""


class WholeFileExporter(Exporter):
    """Base of formats written as one stream (redone whole unless complete): chunks must come in order."""

    def __init__(self, path: Path, units: Units | None, key: str):
        super().__init__(path, units, key)
        self.next_frame = 0

    def _check_order(self, first: int, count: int) -> None:
        if first != self.next_frame:
            raise ValueError(f"{self.fmt}: chunk at frame {first} out of order (expected frame {self.next_frame}); "
                             f"this format is written as one stream and redone whole on a rerun")
        self.next_frame += count

    def _publish(self, tmp: Path) -> None:
        """Make the finished ``tmp`` durable, put it under the final name, then record the output done."""
        publish(tmp, self.path)
        self._mark("done")


class FrameFilesExporter(Exporter):
    """Base of per-frame formats: one file per selected frame in a folder, resumable by chunk.

    Files are ``frame_path(folder, template, name, number, ext)``, ``number`` being the
    frame's number (``numbers[index]``: e.g. an image sequence's own 1001, 1002, ...; ``None``
    numbers frames 0, 1, ... by position) and ``template`` the file name (``{name}_{frame:06d}``
    unless given). Each file is written under a temporary name and renamed; a chunk is
    recorded after all its files. ``tidy`` (the run's own process, once): create the folder,
    remove what killed writes left and, given the output folder's ``ledger``, list this
    output's files in it and remove the listed files of earlier runs that this run does not
    write again (no other file is ever removed or replaced: ``ledger``). ``tidy=False`` (a
    cluster task writing some chunks) leaves the folder alone.
    Subclasses define ``ext`` and ``write_frame(tmp_path, index, number, depth, rgb)``.
    """

    ext = "?"

    def __init__(self, folder: Path, name: str, units: Units | None, key: str, frames: int | None = None,
                 numbers: Sequence[int] | None = None, tidy: bool = True, template: str = DEFAULT_TEMPLATE,
                 ledger: Ledger | None = None):
        super().__init__(folder, units, key)
        self.folder, self.name, self.numbers, self.template = folder, name, numbers, template
        if numbers is not None and frames is not None and len(numbers) != frames:
            raise ValueError(f"{len(numbers)} frame numbers for {frames} frames")
        self.frames = len(numbers) if frames is None and numbers is not None else frames
        if self.complete or not tidy:
            return
        folder.mkdir(parents=True, exist_ok=True)
        targets = [self.frame_path(i) for i in range(self.frames or 0) if self.selected(i)]
        if ledger is not None and self.frames is not None:
            ledger.claim(targets)
            ledger.remove_stale(folder, targets + self.companions())
        ours = frame_file_pattern(template, name, self.ext)
        for leftover in folder.iterdir():  # a killed write's temporary files (not glob: names may hold [, * or ?)
            if ours.fullmatch(temporary_target(leftover.name) or ""):
                leftover.unlink()

    def selected(self, index: int) -> bool:
        """Whether frame ``index`` (position in the video) gets a file."""
        return True

    def companions(self) -> list[Path]:
        """Files of this output in its folder besides the frames' (kept when earlier runs' files go)."""
        return []

    def number(self, index: int) -> int:
        return index if self.numbers is None else int(self.numbers[index])

    def frame_path(self, index: int) -> Path:
        """The file of the frame at position ``index``."""
        return frame_path(self.folder, self.template, self.name, self.number(index), self.ext)

    def needs(self, first: int) -> bool:
        if self.complete:
            return False
        return not (self.chunk_done(first) and (not self.selected(first) or self.frame_path(first).exists()))

    def write(self, first: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        if self.needs_rgb and rgb is None:
            raise ValueError(f"{self.fmt} needs the RGB frames")
        for i in range(len(depth)):
            index = first + i
            if not self.selected(index):
                continue
            number, frame_rgb = self.number(index), None if rgb is None else rgb[i]
            replace_atomically(self.frame_path(index),
                               lambda tmp: self.write_frame(tmp, index, number, depth[i], frame_rgb))
        self._mark(layout.chunk_unit(first))

    def write_frame(self, tmp: Path, index: int, number: int, depth: np.ndarray, rgb: np.ndarray | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self.complete:
            self._mark("done")


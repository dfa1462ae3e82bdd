"""Outputs never touch a file the run did not write: the ledger of written files, and the check
that keeps outputs apart from the input.

``OUTDIR/.rdengine-files.json`` (the *ledger*) lists, relative to the output folder, every
file runs there wrote. A file is listed (``Ledger.claim``, synced to disk) *before* it is
first written, so a kill at any moment leaves no written file unlisted. The ledger is the
only licence to replace or remove a file: a file that exists but is not listed (the user's
plates, another program's file) makes the run stop, naming it, before anything is written,
and only listed files are ever removed (``Ledger.remove_stale``: per-frame files of an
earlier run that this run does not write again).

``check_outputs`` refuses, before any work, an output folder whose outputs would overwrite an
input file, sit in an output folder that holds input files (where runs write and remove
files), or be read as part of the input on the next run (an image-sequence folder, a pattern
or glob that would match them). ``OutputConflict`` messages name both paths.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .. import layout
from ..files import write_text_atomically
from ..inputs.source import FrameSource
from . import FRAME_FORMATS, OUTPUTS, frame_file_pattern, frame_path, output_path, partial_path, scale_path

LEDGER_NAME = ".rdengine-files.json"
WHOLE_FILE_OUTPUTS = ("sidecar", "shots", "contact")  # written whole (atomically), not formats one asks for


class OutputConflict(ValueError):
    """An output would replace, remove or join a file that is not the run's (the message names both)."""


def names_in(folder: Path) -> set[str]:
    """The names in ``folder`` (empty when it does not exist)."""
    try:
        return set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return set()


class Ledger:
    """The files runs in ``out_dir`` wrote (``LEDGER_NAME``), as paths relative to it."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LEDGER_NAME
        try:
            self.files: set[str] = set(json.loads(self.path.read_text())["files"])
        except (FileNotFoundError, NotADirectoryError):  # no output folder yet (or not a folder: said when made)
            self.files = set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputConflict(f"{self.path} (the list of files rdengine wrote in {self.out_dir}) is unreadable "
                                 f"({exc}): without it no output there can be replaced; move the outputs away or "
                                 "choose another -o") from None

    def key(self, path: Path) -> str:
        return Path(path).relative_to(self.out_dir).as_posix()

    def owns(self, path: Path) -> bool:
        return self.key(path) in self.files

    def foreign(self, paths: Iterable[Path]) -> Path | None:
        """The first of ``paths`` that exists but is not listed (one listing per folder), or None."""
        listings: dict[Path, set[str]] = {}
        for path in paths:
            if self.key(path) in self.files:
                continue
            if path.name in listings.setdefault(path.parent, names_in(path.parent)):
                return path
        return None

    def claim(self, paths: Iterable[Path]) -> None:
        """List ``paths`` as written here before they are written (synced); OutputConflict naming the
        first that exists but is not listed (nothing is listed then)."""
        paths = list(paths)
        foreign = self.foreign(paths)
        if foreign is not None:
            raise OutputConflict(not_ours(foreign, self.out_dir))
        new = {self.key(p) for p in paths} - self.files
        if new:
            self.files |= new
            self.save()

    def remove_stale(self, folder: Path, keep: Iterable[Path]) -> int:
        """Remove the listed files directly in ``folder`` that are not in ``keep`` (an earlier run's
        files this run does not write again); returns how many were listed."""
        prefix = self.key(folder) + "/"
        kept = {self.key(p) for p in keep}
        stale = [k for k in self.files if k.startswith(prefix) and "/" not in k[len(prefix):] and k not in kept]
        for key in stale:
            (self.out_dir / key).unlink(missing_ok=True)
        if stale:
            self.files.difference_update(stale)
            self.save()
        return len(stale)

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.path, json.dumps({"version": 1, "files": sorted(self.files)}, indent=0) + "\n")


def not_ours(path: Path, out_dir: Path) -> str:
    return (f"{path} exists and was not written by rdengine in {out_dir}: an output may not replace it; move it "
            "away, or choose another -o (or --name for per-frame files)")


def fixed_files(out_dir: Path, name: str, formats: Iterable[str]) -> list[Path]:
    """The files of ``formats`` (and ``WHOLE_FILE_OUTPUTS`` named there) whose names do not depend
    on frame numbers: whole-file outputs with their partial files, and 16-bit mapping files."""
    files = []
    for fmt in formats:
        if fmt not in OUTPUTS:
            continue  # zarr: the run store itself
        path = output_path(out_dir, name, fmt)
        if fmt in FRAME_FORMATS:
            files += [scale_path(path)] if fmt == "png16" else []
            continue
        files.append(path)
        if fmt not in WHOLE_FILE_OUTPUTS:
            files.append(partial_path(path))
        if fmt == "gray16":
            files.append(scale_path(path))
    return files


@dataclass(frozen=True)
class OutputPlan:
    """Every path a run in ``out_dir`` may write: ``files`` (fixed names), per-frame ``folders``
    with the ``patterns`` of their files' names and one ``examples`` file each, and the run ``store``."""

    out_dir: Path
    files: tuple[Path, ...]
    folders: tuple[Path, ...]
    patterns: tuple[re.Pattern, ...]
    examples: tuple[Path, ...]
    store: Path


def plan_outputs(out_dir: Path, name: str, formats: Iterable[str], shots: bool, template: str) -> OutputPlan:
    """The paths a run writing ``formats`` (and the shots files when ``shots``) for ``name`` may write
    (besides the ledger)."""
    out_dir = Path(out_dir)
    formats = tuple(formats)
    extra = WHOLE_FILE_OUTPUTS if shots else ("sidecar",)
    folders = [(output_path(out_dir, name, fmt), FRAME_FORMATS[fmt]) for fmt in formats if fmt in FRAME_FORMATS]
    return OutputPlan(out_dir, tuple(fixed_files(out_dir, name, formats + extra)),
                      tuple(folder for folder, _ in folders),
                      tuple(frame_file_pattern(template, name, ext) for _, ext in folders),
                      tuple(frame_path(folder, template, name, 1, ext) for folder, ext in folders),
                      out_dir / layout.STORE_NAME)


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(source: FrameSource, plan: OutputPlan) -> None:
    """OutputConflict (naming both paths) when an output of ``plan`` would overwrite or remove an
    input file, write among an image sequence's frames, be read as part of the input on the next
    run, or replace a file no run in the output folder wrote; checks only, writes nothing."""
    inputs = {os.path.realpath(p): Path(p) for p in source.files()}
    outputs = [*plan.files, *plan.examples]
    for path in [plan.out_dir, *outputs, *plan.folders, plan.store, plan.out_dir / LEDGER_NAME]:
        found = inputs.get(os.path.realpath(path))
        if found is not None:
            raise OutputConflict(f"output {path} would overwrite the input file {found} (of input {source.info.path}):"
                                 " choose another -o")
    for folder in [*plan.folders, plan.store]:
        real = os.path.realpath(folder)
        found = next((p for r, p in inputs.items() if inside(r, real)), None)
        if found is not None:
            raise OutputConflict(f"output folder {folder} holds the input file {found}: runs write and remove "
                                 "files there; choose another -o")
    if source.info.kind == "images":
        out_dir = os.path.realpath(plan.out_dir)
        found = next((p for r, p in inputs.items() if os.path.dirname(r) == out_dir), None)
        if found is not None:
            raise OutputConflict(f"output folder {plan.out_dir} holds the input's frames ({found}): outputs "
                                 "written among them could join the sequence; choose another -o")
    for path in outputs:
        if source.includes(path):
            raise OutputConflict(f"output {path} would be read as a frame of the input {source.info.path} on the "
                                 "next run: choose another -o")
    ledger = Ledger(plan.out_dir)
    foreign = ledger.foreign(plan.files)
    for folder, pattern in zip(plan.folders, plan.patterns):
        if foreign is None:
            foreign = next((folder / n for n in sorted(names_in(folder))
                            if pattern.fullmatch(n) and not ledger.owns(folder / n)), None)
    if foreign is not None:
        raise OutputConflict(not_ours(foreign, plan.out_dir))

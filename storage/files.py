"""Files that appear whole or not at all: written beside their final name, then renamed over it.

A reader (or a rerun after a kill) sees either the old file or the new one, never half of
one. ``durable``: the data reaches the disk before the rename (fsync), so a power cut cannot
leave the new name pointing at missing blocks; small caches skip it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

TEMPORARY_NAME = re.compile(r"\.(?P<stem>.+)\.\d+\.tmp(?P<suffix>(\.[^.]*)?)")  # what temporary_sibling makes


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that keeps its suffix (writers that read it still see ``.png``, ...)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def temporary_target(name: str) -> str | None:
    """The file name a ``temporary_sibling`` name was made for (a killed write's leftover), or None."""
    match = TEMPORARY_NAME.fullmatch(name)
    return match["stem"] + match["suffix"] if match else None


def publish(tmp: Path, path: Path, durable: bool = True) -> Path:
    """Put the finished file ``tmp`` under ``path`` (atomically; its data synced first if ``durable``)."""
    if durable:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return Path(path)


def replace_atomically(path: Path, write: Callable[[Path], None], durable: bool = True) -> Path:
    """``write(tmp)`` creates the new content at a temporary sibling, which then replaces ``path``;
    a failed ``write`` leaves ``path`` as it was and no temporary file behind."""
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        return publish(tmp, path, durable)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomically(path: Path, data: bytes, durable: bool = True) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_bytes(data), durable)


def write_text_atomically(path: Path, text: str, durable: bool = True) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_text(text), durable)

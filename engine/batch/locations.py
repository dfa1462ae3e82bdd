"""Where batch inputs and outputs live: local paths or fsspec URLs, fetched to and uploaded from workers."""

from __future__ import annotations

import os
from pathlib import Path

from ...storage import layout
from ...storage.files import replace_atomically
from ..errors import EngineError
from .archive import is_url, local_path, short_hash


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for local paths and URLs alike."""
    if is_url(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(local_path(root), *parts)


def filesystem(location: str):
    """(filesystem, path) for a local path or URL."""
    from fsspec.core import url_to_fs

    return url_to_fs(location if is_url(location) else local_path(location))



def fetch_input(source: str, cache_dir: str) -> str:
    """A local path for ``source``: local files as is, URLs copied once into ``cache_dir``."""
    if not is_url(source):
        return local_path(source)
    fs, path = filesystem(source)
    target = Path(cache_dir) / "inputs" / short_hash(source, 16) / path.rstrip("/").rsplit("/", 1)[-1]
    size = fs.size(path)
    if target.exists() and target.stat().st_size == size:
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        replace_atomically(target, lambda tmp: fs.get_file(path, str(tmp)), durable=False)
    except FileNotFoundError:
        raise EngineError(f"input not found: {source}") from None
    return str(target)


def upload(staging: Path, out: str) -> None:
    """Copy the staged output folder to the URL ``out`` (exports first, the run store last)."""
    fs, root = filesystem(out)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    def store_last(p: Path) -> tuple:
        return layout.STORE_NAME in p.relative_to(staging).parts[:1], str(p)

    for local in sorted(staging.rglob("*"), key=store_last):
        if local.is_file() and not local.name.endswith(".lock"):
            fs.put_file(str(local), f"{root}/{local.relative_to(staging).as_posix()}")


"""Output folder names of ``rdengine batch``: stable for each video whatever else the archive holds.

A video's name is made from the path its INPUT found it by (``archive.Found.relative``):
folders joined by ``__``, the extension dropped (a sequence folder keeps its whole name, dots
included: ``plate.v2``), unsafe characters replaced. Once given, a name is kept:
``OUTROOT/batch_names.json`` maps every video's location to its folder, and a rerun reuses
that whatever inputs were added or removed since. A new video whose name is taken (by
another video of the index, an existing folder, or a same-named video arriving in the same
batch) gets a short hash of its location appended. Run folders made before the index
existed are found again by the run store's input (file name, then size and modification
time or the content hash) and keep their names.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from pathlib import Path

from ...storage import layout
from ...storage.files import write_text_atomically
from ...storage.run_store import RunSummary, read_summary
from .archive import ArchiveVideo, Found, expand_inputs, is_url, short_hash
from .locations import filesystem, join

INDEX_NAME = "batch_names.json"
SEPARATOR = "__"


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "video"


def default_name(found: Found) -> str:
    """The folder name a video gets from its path under its INPUT (see the module docstring)."""
    parts = [p for p in found.relative.split("/") if p] or ["video"]
    if not (not is_url(found.source) and os.path.isdir(found.source)):  # a sequence folder keeps its whole name
        parts[-1] = posixpath.splitext(parts[-1])[0].replace("%", "").replace("#", "") or parts[-1]
    return SEPARATOR.join(sanitize(p) for p in parts)


def read_index(out_root: str) -> dict[str, str]:
    """Location -> folder name of every video a batch into ``out_root`` has named."""
    fs, path = filesystem(join(out_root, INDEX_NAME))
    try:
        with fs.open(path, "rt", encoding="utf-8") as f:
            names = json.load(f).get("names", {})
    except (FileNotFoundError, OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def write_index(out_root: str, names: dict[str, str]) -> None:
    blob = json.dumps({"version": 1, "names": dict(sorted(names.items()))}, indent=1)
    location = join(out_root, INDEX_NAME)
    if is_url(out_root):
        fs, path = filesystem(location)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "wt") as f:
            f.write(blob)
    else:
        os.makedirs(out_root, exist_ok=True)
        write_text_atomically(Path(location), blob)


def folder_names(out_root: str) -> list[str]:
    """Names of the entries directly under ``out_root`` (none when it does not exist yet)."""
    fs, root = filesystem(out_root)
    try:
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(root, detail=False)]
    except (FileNotFoundError, OSError):
        return []


def run_folders(out_root: str) -> dict[str, RunSummary]:
    """Folder name -> run summary of every run folder directly under ``out_root``."""
    summaries = {name: read_summary(join(out_root, name, layout.STORE_NAME)) for name in folder_names(out_root)}
    return {name: summary for name, summary in summaries.items() if summary is not None}


def same_input(source: str, summary: RunSummary) -> bool:
    """Whether the run ``summary`` was made from the local ``source`` as it is now: same file name,
    then same sizes and modification times, else the same content."""
    from ...storage.inputs import InputError, open_input

    recorded = summary.manifest.get("input", {})
    if recorded.get("name") != os.path.basename(source.rstrip("/")):
        return False
    try:
        opened = open_input(source)
        return summary.info.get("input_stat") == opened.stat() or recorded.get("identity") == opened.identity()
    except (OSError, InputError):
        return False


def adopt_old_runs(new: list[Found], out_root: str, claimed: set[str]) -> dict[str, str]:
    """Location -> folder for the ``new`` local videos whose run folder (not in the index,
    not ``claimed``) was made before the index existed."""
    unclaimed = {name: summary for name, summary in run_folders(out_root).items() if name.lower() not in claimed}
    adopted: dict[str, str] = {}
    for found in new:
        if found.error or is_url(found.source):
            continue
        for name, summary in unclaimed.items():
            if same_input(found.source, summary):
                adopted[found.source] = name
                del unclaimed[name]
                break
    return adopted


def assign_names(found: list[Found], out_root: str | None = None) -> list[ArchiveVideo]:
    """Each video with its output folder name: from the index of ``out_root`` when it was named
    before, else an old run folder of its input, else ``default_name`` (hashed when taken);
    the index is written back. ``out_root=None``: no index (names from the paths alone)."""
    index = read_index(out_root) if out_root else {}
    known = dict(index)
    claimed = {name.lower() for name in index.values()}
    new = [f for f in found if f.source not in index]
    names = dict(index)
    if out_root and new:
        adopted = adopt_old_runs(new, out_root, claimed)
        index.update(adopted)
        names.update(adopted)
        claimed |= {name.lower() for name in adopted.values()}
        new = [f for f in new if f.source not in adopted]
    wanted = {f.source: default_name(f) for f in new}
    counts: dict[str, int] = {}
    for name in wanted.values():  # case-insensitive file systems would merge names differing in case
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    existing = {n.lower() for n in folder_names(out_root)} if out_root and new else set()
    for f in new:
        name = wanted[f.source]
        taken = counts[name.lower()] > 1 or name.lower() in claimed or name.lower() in existing
        names[f.source] = f"{name}-{short_hash(f.source)}" if taken else name
        if not f.error:  # a list entry that names nothing claims no name
            index[f.source] = names[f.source]
    if out_root and len(index) > len(known):
        write_index(out_root, index)
    return [ArchiveVideo(f.source, names[f.source], f.error) for f in found]



def archive_videos(inputs: list[str] | tuple[str, ...], out_root: str | None = None,
                   exclude: str | None = None) -> list[ArchiveVideo]:
    """Expand ``inputs`` (never searching ``exclude``) and name each video's output folder under
    ``out_root`` (see ``assign_names``)."""
    return assign_names(expand_inputs(inputs, exclude), out_root)

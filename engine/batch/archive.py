"""Archive inputs for ``rdengine batch``: expand INPUT arguments into videos and name their run folders.

An INPUT is a video file, an image sequence (a printf pattern such as ``plates/shot_%04d.exr``),
a folder (searched recursively: video files, and every folder of image frames without videos
is one image sequence), a text file listing one input per line (``#`` comments, paths
relative to the list file), or a glob (``**`` recurses). Each may be a local path, a
``file://`` URL or any fsspec URL (``s3://bucket/videos/``, video files only); local paths
and ``file://`` URLs come back as absolute local paths, other URLs as URLs. Folders that hold
a run store (rdengine outputs) and the output root itself are never searched, so an output
root inside the input folder is not processed as input on a rerun. An entry of a list file
that names nothing (a missing file, a glob without matches) fails alone in the report.

Every video gets one output folder under OUTROOT whose name is its path relative to the
common root of all videos on its file system (folders joined by ``__``, extension dropped), plus a short hash of
its full location when two videos would otherwise share a name. Same-named files in
different folders therefore never collide, and the same inputs always give the same names.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from ...storage import layout
from ...storage.inputs.image_sequence import IMAGE_EXTENSIONS, is_sequence_spec
from ..errors import EngineError

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                              ".m2ts", ".wmv", ".flv", ".3gp", ".ogv", ".gif", ".y4m"})
LIST_EXTENSIONS = frozenset({".txt", ".list", ".lst"})
SEPARATOR = "__"
MAX_LIST_DEPTH = 4


@dataclass(frozen=True)
class ArchiveVideo:
    """One video of the archive: where it is (``source``), the name of its output folder, and
    why it cannot be processed (``error``: a list entry that names nothing)."""

    source: str
    name: str
    error: str | None = None


def is_url(path: str) -> bool:
    """True for ``protocol://...`` strings other than ``file://`` (which is a local path)."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path)) and not path.startswith("file://")


def local_path(path: str) -> str:
    """``file://`` URLs and ``~`` expanded to an absolute local path; other strings unchanged."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


def has_magic(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def is_video_name(path: str) -> bool:
    return posixpath.splitext(path.rstrip("/"))[1].lower() in VIDEO_EXTENSIONS


def _url_fs(url: str):
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def _expand_url(url: str, depth: int) -> list[str]:
    fs, path = _url_fs(url)
    protocol = url.split("://", 1)[0]

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p) if hasattr(fs, "unstrip_protocol") else f"{protocol}://{p}"

    if has_magic(path):
        found = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        if not found:
            raise EngineError(f"input pattern matches no files: {url}")
        return [unstrip(p) for p in found if is_video_name(p)]
    if not fs.exists(path):
        raise EngineError(f"input not found: {url}")
    if fs.isdir(path):
        return [unstrip(p) for p in sorted(fs.find(path)) if is_video_name(p)]
    if posixpath.splitext(path)[1].lower() in LIST_EXTENSIONS:
        with fs.open(path, "rt") as f:
            text = f.read()
        base = unstrip(posixpath.dirname(path))
        return _expand_list(text, base, depth, url, None)
    return [url]


def _expand_list(text: str, base: str, depth: int, origin: str, exclude: str | None) -> list[str]:
    """Lines of a list file, each expanded; relative entries are relative to the list file's folder."""
    if depth >= MAX_LIST_DEPTH:
        raise EngineError(f"list files nest deeper than {MAX_LIST_DEPTH} levels at {origin}")
    out: list[str] = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not (is_url(entry) or entry.startswith("file://") or os.path.isabs(os.path.expanduser(entry))):
            entry = posixpath.join(base, entry) if is_url(base) else os.path.join(base, entry)
        # an entry that names nothing is reported as a failed video, not an error of the whole batch
        try:
            out.extend(_expand(entry, depth + 1, missing_ok=True, exclude=exclude))
        except EngineError as exc:
            out.append(Missing(entry, str(exc)))
    return out


class Missing(str):
    """A list entry that names nothing: kept as an input that fails with ``error``."""

    def __new__(cls, entry: str, error: str):
        missing = super().__new__(cls, entry)
        missing.error = error
        return missing


def is_frame_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


def _walk(root: str, exclude: str | None) -> list[str]:
    """Videos under ``root``, and each folder of image frames (without videos) as one sequence."""
    found = []
    for folder, dirs, files in os.walk(root):
        if (exclude and os.path.abspath(folder) == exclude) or layout.STORE_NAME in dirs:
            dirs[:] = []  # the output root, or an rdengine output folder: never input
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        videos = [os.path.join(folder, f) for f in sorted(files) if is_video_name(f) and not f.startswith(".")]
        found.extend(videos)
        if not videos and sum(map(is_frame_name, files)) >= 2:
            found.append(folder)
    return found


def _expand(item: str, depth: int = 0, missing_ok: bool = False, exclude: str | None = None) -> list[str]:
    if is_url(item):
        if missing_ok and is_video_name(item) and not has_magic(item):
            return [item]
        return _expand_url(item, depth)
    path = local_path(item)
    if is_sequence_spec(path) and not has_magic(path):  # shot_%04d.exr, shot_####.exr
        return [path]
    if has_magic(path):
        matches = sorted(globlib.glob(path, recursive=True))
        if not matches:
            raise EngineError(f"input pattern matches no files: {item}")
        found = []
        for p in matches:
            if os.path.isfile(p) and is_video_name(p):
                found.append(os.path.abspath(p))
            elif os.path.isdir(p):
                found.extend(_walk(os.path.abspath(p), exclude))
        return found
    if os.path.isdir(path):
        return _walk(path, exclude)
    if not os.path.exists(path):
        if missing_ok:
            return [path]
        raise EngineError(f"input not found: {item}")
    if os.path.splitext(path)[1].lower() in LIST_EXTENSIONS:
        try:
            text = Path(path).read_text()
        except UnicodeDecodeError:
            raise EngineError(f"list file is not text: {item}") from None
        return _expand_list(text, os.path.dirname(path), depth, item, exclude)
    return [path]  # any other file is taken as a video; one that does not decode fails alone


def expand_inputs(inputs: list[str] | tuple[str, ...], exclude: str | None = None) -> list[str]:
    """Every video named by ``inputs``, in argument order, each once (``Missing`` for list
    entries that name nothing); ``exclude``: a local folder never searched (the output root).

    Raises EngineError for an argument that names nothing (missing path, glob without matches).
    """
    if not inputs:
        raise EngineError("give at least one INPUT (video, folder, list file or glob)")
    seen: set[str] = set()
    videos: list[str] = []
    for item in inputs:
        for video in _expand(str(item), exclude=exclude):
            if video not in seen:
                seen.add(video)
                videos.append(video)
    return videos


def _location_key(source: str) -> list[str]:
    """Path components including the filesystem (protocol) so different stores never share a root."""
    if is_url(source):
        protocol, rest = source.split("://", 1)
        return [f"{protocol}:"] + [p for p in rest.split("/") if p]
    return ["file:"] + [p for p in Path(source).parts if p not in ("/", "\\")]


def short_hash(source: str, n: int = 8) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:n]


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "video"


def name_videos(sources: list[str]) -> list[ArchiveVideo]:
    """Deterministic, collision-free output folder names (see the module docstring)."""
    if not sources:
        return []
    keys = [_location_key(s) for s in sources]
    common: dict[str, int] = {}  # per file system: the number of leading path components all its videos share
    for protocol in {k[0] for k in keys}:
        folders = [k[:-1] for k in keys if k[0] == protocol]
        n = 1
        while all(len(f) > n for f in folders) and len({f[n] for f in folders}) == 1:
            n += 1
        common[protocol] = n
    names = []
    for source, key in zip(sources, keys):
        parts = key[common[key[0]]:] or key[-1:]
        if not (not is_url(source) and os.path.isdir(source)):  # a sequence folder keeps its whole name
            parts[-1] = posixpath.splitext(parts[-1])[0].replace("%", "").replace("#", "") or parts[-1]
        names.append(SEPARATOR.join(sanitize(p) for p in parts))
    counts: dict[str, int] = {}
    for name in names:  # case-insensitive file systems would merge names differing in case
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return [ArchiveVideo(str(source), f"{name}-{short_hash(source)}" if counts[name.lower()] > 1 else name,
                         getattr(source, "error", None))
            for source, name in zip(sources, names)]


def archive_videos(inputs: list[str] | tuple[str, ...], exclude: str | None = None) -> list[ArchiveVideo]:
    """Expand ``inputs`` (never searching ``exclude``) and name each video's output folder."""
    return name_videos(expand_inputs(inputs, exclude))

"""Archive inputs for ``rdengine batch``: expand INPUT arguments into videos, each with the path
that names its output folder.

An INPUT is a video file, an image sequence (a printf pattern such as ``plates/shot_%04d.exr``),
a folder (searched recursively: video files, and every folder of image frames without videos
is one image sequence), a text file listing one input per line (``#`` comments, paths
relative to the list file, UTF-8 with or without a byte-order mark), or a glob (``**``
recurses). Each may be a local path, a ``file://`` URL or any fsspec URL (``s3://bucket/videos/``,
video files only); local paths and ``file://`` URLs come back as absolute local paths, other
URLs as URLs. Folders that hold a run store (rdengine outputs) and the output root itself are
never searched, so an output root inside the input folder is not processed as input on a
rerun. Symbolic links are followed, but every real folder is searched once and every real
file is one video (a link loop never repeats a video). An entry of a list file that names
nothing (a missing file, a glob without matches) fails alone in the report.

Each video keeps the path by which its INPUT found it (``Found.relative``): under the folder
it names, under a glob's fixed leading folders, or the file's own name. Output folder names
are made from that path alone (``names``), so they never change when other inputs appear.
"""

from __future__ import annotations

import fnmatch
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
MAX_LIST_DEPTH = 4


@dataclass(frozen=True)
class Found:
    """A video an INPUT names: where it is (``source``), its ``/``-separated path under what the
    INPUT named (``relative``: the output folder's name is made from it), and why it cannot be
    processed (``error``: a list entry that names nothing)."""

    source: str
    relative: str
    error: str | None = None


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


def fixed_prefix(pattern: str, sep: str) -> str:
    """The leading folders of a glob ``pattern`` that hold no wildcard."""
    parts = pattern.split(sep)
    fixed = []
    for part in parts[:-1]:
        if has_magic(part):
            break
        fixed.append(part)
    return sep.join(fixed) or sep


def relative_to(path: str, base: str, sep: str) -> str:
    """``path`` under ``base`` as a ``/``-separated path (``path``'s own name when it is ``base``)."""
    rest = path[len(base):].strip(sep) if path.startswith(base) else ""
    return (rest or path.rstrip(sep).rsplit(sep, 1)[-1]).replace(sep, "/")


def _url_fs(url: str):
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def _expand_url(url: str, depth: int) -> list[Found]:
    fs, path = _url_fs(url)
    protocol = url.split("://", 1)[0]

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p) if hasattr(fs, "unstrip_protocol") else f"{protocol}://{p}"

    if has_magic(path):
        found = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        if not found:
            raise EngineError(f"input pattern matches no files: {url}")
        base = fixed_prefix(path, "/")
        return [Found(unstrip(p), relative_to(p, base, "/")) for p in found if is_video_name(p)]
    if not fs.exists(path):
        raise EngineError(f"input not found: {url}")
    if fs.isdir(path):
        return [Found(unstrip(p), relative_to(p, path.rstrip("/"), "/")) for p in sorted(fs.find(path))
                if is_video_name(p)]
    if posixpath.splitext(path)[1].lower() in LIST_EXTENSIONS:
        with fs.open(path, "rb") as f:
            text = list_text(f.read(), url)
        base = unstrip(posixpath.dirname(path))
        return _expand_list(text, base, depth, url, None)
    return [Found(url, posixpath.basename(path))]


def list_text(data: bytes, origin: str) -> str:
    """A list file's text: UTF-8, a byte-order mark dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EngineError(f"list file is not UTF-8 text: {origin}") from None


def _expand_list(text: str, base: str, depth: int, origin: str, exclude: str | None) -> list[Found]:
    """Lines of a list file, each expanded; relative entries are relative to the list file's folder."""
    if depth >= MAX_LIST_DEPTH:
        raise EngineError(f"list files nest deeper than {MAX_LIST_DEPTH} levels at {origin}")
    out: list[Found] = []
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
            out.append(Found(entry, entry.rstrip("/").rsplit("/", 1)[-1], str(exc)))
    return out


def is_frame_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


def walk_once(root: str):
    """``os.walk(root)`` following symbolic links, every real folder visited once (a link back
    to a parent ends there)."""
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            stat = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        yield folder, dirs, files


def _walk(root: str, exclude: str | None) -> list[Found]:
    """Videos under ``root``, and each folder of image frames (without videos) as one sequence."""
    found = []
    for folder, dirs, files in walk_once(root):
        if (exclude and os.path.abspath(folder) == exclude) or layout.STORE_NAME in dirs:
            dirs[:] = []  # the output root, or an rdengine output folder: never input
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        videos = [os.path.join(folder, f) for f in sorted(files) if is_video_name(f) and not f.startswith(".")]
        found.extend(Found(v, relative_to(v, root, os.sep)) for v in videos)
        if not videos and sum(map(is_frame_name, files)) >= 2:
            found.append(Found(folder, relative_to(folder, root, os.sep)))
    return found


def _matches(parts: list[str], patterns: list[str]) -> bool:
    """Whether path ``parts`` match glob ``patterns`` segment by segment (``**``: any number of
    folders); names starting with ``.`` match only patterns that do, as in ``glob``."""
    if not patterns:
        return not parts
    if patterns[0] == "**":
        return any(_matches(parts[k:], patterns[1:]) for k in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:k]))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], patterns[0]) \
        and (not parts[0].startswith(".") or patterns[0].startswith(".")) and _matches(parts[1:], patterns[1:])


def glob_local(pattern: str) -> list[str]:
    """Paths matching ``pattern`` (``**`` recurses), sorted; a ``**`` search follows links but
    visits each real folder once (``walk_once``), where ``glob`` would go round a link loop."""
    if "**" not in pattern:
        return sorted(globlib.glob(pattern))
    base = fixed_prefix(pattern, os.sep)
    patterns = [p for p in pattern[len(base):].split(os.sep) if p]
    found = []
    for folder, dirs, files in walk_once(base):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            if _matches(os.path.relpath(path, base).split(os.sep), patterns):
                found.append(path)
    return sorted(found)


def _expand(item: str, depth: int = 0, missing_ok: bool = False, exclude: str | None = None) -> list[Found]:
    if is_url(item):
        if missing_ok and is_video_name(item) and not has_magic(item):
            return [Found(item, posixpath.basename(item))]
        return _expand_url(item, depth)
    path = local_path(item)
    if is_sequence_spec(path) and not has_magic(path):  # shot_%04d.exr, shot_####.exr
        return [Found(path, os.path.basename(path))]
    if has_magic(path):
        matches = glob_local(path)
        if not matches:
            raise EngineError(f"input pattern matches no files: {item}")
        base = fixed_prefix(path, os.sep)
        found = []
        for p in matches:
            if os.path.isfile(p) and is_video_name(p):
                found.append(Found(os.path.abspath(p), relative_to(p, base, os.sep)))
            elif os.path.isdir(p):
                found.extend(Found(f.source, relative_to(f.source, base, os.sep))
                             for f in _walk(os.path.abspath(p), exclude))
        return found
    if os.path.isdir(path):
        return _walk(path, exclude)
    if not os.path.exists(path):
        if missing_ok:
            return [Found(path, os.path.basename(path))]
        raise EngineError(f"input not found: {item}")
    if os.path.splitext(path)[1].lower() in LIST_EXTENSIONS:
        return _expand_list(list_text(Path(path).read_bytes(), item), os.path.dirname(path), depth, item, exclude)
    return [Found(path, os.path.basename(path))]  # any other file is taken as a video; one that does not decode fails alone


def identity_key(source: str) -> str:
    """What makes two found paths one video: the real path of a local file (links resolved)."""
    return source if is_url(source) else os.path.realpath(source)


def expand_inputs(inputs: list[str] | tuple[str, ...], exclude: str | None = None) -> list[Found]:
    """Every video named by ``inputs``, in argument order, each once (with ``error`` for list
    entries that name nothing); ``exclude``: a local folder never searched (the output root).

    Raises EngineError for an argument that names nothing (missing path, glob without matches).
    """
    if not inputs:
        raise EngineError("give at least one INPUT (video, folder, list file or glob)")
    seen: set[str] = set()
    videos: list[Found] = []
    for item in inputs:
        for video in _expand(str(item), exclude=exclude):
            key = identity_key(video.source)
            if key not in seen:
                seen.add(key)
                videos.append(video)
    return videos


def short_hash(source: str, n: int = 8) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:n]

"""What ``rdengine serve`` lets in: the address it binds, who logs in, which paths and uploads it reads.

Every refusal is a one-line ``ConfigError`` (server options) or ``InputError`` (a user's path or
upload) naming the problem.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Sequence

from ...errors import ConfigError, InputError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp")


def login(host: str, auth: str | None) -> tuple[str, str] | None:
    """The ``(user, password)`` of ``--auth USER:PASS``; refuses a non-local ``host`` without one."""
    if auth is None:
        if host not in LOCAL_HOSTS:
            raise ConfigError(f"--host {host} makes the server reachable from other machines: give --auth USER:PASS "
                              "(or bind 127.0.0.1)")
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must look like USER:PASS (both non-empty)")
    return user, password


def safe_name(name: str, fallback: str = "upload") -> str:
    """A file name from a user (an upload's, a zip member's) reduced to one harmless path part:
    its last component, letters, digits, ``._-`` only, no leading dot, at most 100 characters."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")[-100:]
    return cleaned or fallback


def allowed_path(path: str, allow_dirs: Sequence[Path]) -> Path:
    """``path`` resolved (symlinks, ``..``) if it lies inside one of ``allow_dirs``; else ``InputError``."""
    if not allow_dirs:
        raise InputError("this server reads no paths (start it with --allow-dir DIR); upload a file instead")
    resolved = Path(path).expanduser().resolve()
    if not any(resolved.is_relative_to(folder.resolve()) for folder in allow_dirs):
        raise InputError(f"{path} is outside the folders this server may read (--allow-dir)")
    if not resolved.exists():
        raise InputError(f"input not found: {path}")
    return resolved


def extract_frames(archive: Path, folder: Path, max_bytes: int) -> Path:
    """Unpack the images of a zip of frames into ``folder`` (flat, names made safe, in name order);
    refuses archives that unpack to more than ``max_bytes`` or hold no images."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir() and Path(m.filename).suffix.lower()
                       in FRAME_SUFFIXES and not Path(m.filename).name.startswith(".")]
            if not members:
                raise InputError(f"{archive.name}: no image frames ({', '.join(FRAME_SUFFIXES)}) in the zip")
            if sum(m.file_size for m in members) > max_bytes:
                raise InputError(f"{archive.name} unpacks to more than the upload limit of {max_bytes >> 20} MiB")
            folder.mkdir(parents=True, exist_ok=True)
            for member in members:
                target = folder / safe_name(member.filename, "frame")
                with bundle.open(member) as source, open(target, "wb") as out:
                    out.write(source.read(max_bytes + 1))
    except zipfile.BadZipFile:
        raise InputError(f"{archive.name} is not a readable zip file") from None
    return folder

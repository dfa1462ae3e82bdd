"""The words for failed writes: what happened and what to do about it. The engine's run failure
(``EngineError``) is defined with every user-facing error in ``rdengine.errors``."""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import EngineError



WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (size limit)",
                errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
                errno.EIO: "input/output error"}
FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
NOT_A_FOLDER = (errno.EEXIST, errno.ENOTDIR)


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what happened and to which file."""
    what = WRITE_ERRNOS.get(exc.errno) or exc.strerror or str(exc)
    return f"{what} ({exc.filename})" if exc.filename else what


def write_remedy(exc: OSError) -> str:
    """What a failed write leaves and what to do: free space only when space ran out."""
    if exc.errno in NOT_WRITABLE:
        return "make the output folder writable (or choose another -o) and rerun the same command"
    if exc.errno in NOT_A_FOLDER:
        return "a file stands where a folder must be: choose another -o (or move the file)"
    what = "free space" if exc.errno in FULL else "fix the cause"
    return f"the store is left resumable: {what} and rerun the same command to continue"


def output_folder(path: Path) -> Path:
    """``path`` as an existing folder (made if absent, parents too); EngineError when it cannot be:
    a file in the way, no permission, a read-only file system."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EngineError(f"-o {path} is a file, not a folder: choose another -o (or move the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(f"cannot make the output folder {path}: {describe_os_error(exc)}; "
                          f"{write_remedy(exc)}") from None
    return path

"""One writer per run store: an exclusive lock file next to the store.

``RunLock(path)`` guards the store ``path`` with ``path.lock`` (e.g. ``OUTDIR/run.zarr.lock``,
outside the store so ``--overwrite`` can delete the store while holding it). The lock is
an OS advisory lock (``fcntl.flock``), which the kernel drops when its holder dies, even
by SIGKILL; the file also records the holder (pid, host, start time) for messages.
A lock file left by a process that is gone (same host, pid not alive) is taken over with
a note. A live holder makes ``acquire`` raise ``StoreLocked`` naming it. A clean release removes
the file (while still holding the lock, so a waiting opener notices and opens the path anew).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None


class StoreLocked(RuntimeError):
    """Another live process holds the run store (message names it)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def read_holder(lock_path: Path) -> dict:
    """The holder recorded in a lock file (``{}`` if absent or unreadable)."""
    try:
        return json.loads(Path(lock_path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def lock_path_for(store_path: str | Path) -> Path:
    p = Path(store_path)
    return p.with_name(p.name + ".lock")


class RunLock:
    """Exclusive, crash-safe lock of one run store; use as a context manager."""

    def __init__(self, store_path: str | Path):
        self.store_path = Path(store_path)
        self.path = lock_path_for(store_path)
        self.fd: int | None = None
        self.took_over: dict | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None or self._lock(fd):
                break
            os.close(fd)  # locked a file its holder removed on release: open the path anew
        try:
            holder = read_holder(self.path)
            here = socket.gethostname()
            if holder and holder.get("pid") != os.getpid():
                if holder.get("host") == here and pid_alive(int(holder.get("pid", -1))) and fcntl is None:
                    raise StoreLocked(self._busy_message(holder))
                if holder.get("host") not in (None, here) and fcntl is None:
                    raise StoreLocked(self._busy_message(holder))
                self.took_over = holder  # a stale lock: its process is gone (the OS lock was free)
            me = {"pid": os.getpid(), "host": here, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _lock(self, fd: int) -> bool:
        """Take the OS lock on ``fd``; False if the file was unlinked meanwhile (released)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise StoreLocked(self._busy_message(read_holder(self.path))) from None
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _busy_message(self, holder: dict) -> str:
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}" if holder else "another process"
        since = f" (since {holder['started']})" if holder.get("started") else ""
        return (f"run store {self.store_path} is in use by {who}{since}; wait for it to finish "
                f"or stop it (a lock left by a killed process is taken over automatically)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while held: a waiting opener sees it gone and opens anew
        except OSError:
            pass
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

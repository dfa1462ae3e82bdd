"""The job store and queue of ``rdengine serve``: one folder per job under ``--runs``, one run at a time.

A job folder holds ``job.json`` (input and options, fixed at submission), ``state.json``
(``queued``, ``running``, ``done``, ``failed`` or ``stopped``, and a one-line message),
``log.txt`` (the worker's JSON progress lines, one section per start), ``input/`` (uploads)
and ``out/`` (the output folder of ``rdengine process``: run store, outputs). Everything is on
disk, so a restarted server finds its jobs; one left ``running`` by a server that died is
queued again and resumes from its run store.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...storage.files import write_text_atomically
from ...storage.layout import STORE_NAME
from ...storage.lock import lock_path_for, pid_alive, read_holder

RUN_MARK = "# run started"  # the log line before each start of the worker
STOPPED_EXIT = 130


@dataclass(frozen=True)
class Job:
    """One job: its folder under ``--runs``; ``id`` is the folder's name."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def spec(self) -> dict[str, Any]:
        """``{"input": path, "options": {...}, "label": name shown}`` as submitted."""
        return json.loads((self.folder / "job.json").read_text())

    @property
    def state(self) -> dict[str, str]:
        try:
            return json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return {"status": "queued", "message": ""}

    def set_state(self, status: str, message: str = "") -> None:
        write_text_atomically(self.folder / "state.json", json.dumps({"status": status, "message": message}))

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def log(self) -> Path:
        return self.folder / "log.txt"

    def lock_holder(self) -> dict | None:
        """The live process holding this job's run store lock (pid, host, started), else None."""
        holder = read_holder(lock_path_for(self.out / STORE_NAME))
        if not holder:
            return None
        if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1))):
            return None  # a stale lock of a killed run: taken over when the job runs
        return holder


class JobQueue:
    """Jobs under ``runs``, run one at a time (one device) by a background thread, each in a
    worker process (``engine.serve.worker``); ``defaults`` are options every job gets
    (``checkpoint``, ``device``) unless it sets them."""

    def __init__(self, runs: Path, defaults: dict[str, Any]):
        self.runs = Path(runs)
        self.defaults = dict(defaults)
        self.runs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._current: tuple[Job, subprocess.Popen] | None = None
        self._stopping: set[str] = set()

    def start(self) -> None:
        """Queue again the jobs a previous server left running, then start working."""
        for job in self.jobs():
            if job.state["status"] == "running":
                job.set_state("queued", "interrupted by a server restart: resumes from its run store")
        threading.Thread(target=self._work, name="rdengine-serve-queue", daemon=True).start()

    def jobs(self) -> list[Job]:
        """Every job, oldest first (ids start with the submission time)."""
        return [Job(p) for p in sorted(self.runs.iterdir()) if (p / "job.json").is_file()]

    def job(self, job_id: str) -> Job:
        job = Job(self.runs / job_id)
        if "/" in job_id or job_id.startswith(".") or not (job.folder / "job.json").is_file():
            raise KeyError(job_id)
        return job

    def new_folder(self, label: str) -> Path:
        """A fresh job folder, named by the time and ``label`` (a safe name)."""
        folder = self.runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}-{label}"
        (folder / "input").mkdir(parents=True)
        return folder

    def submit(self, folder: Path, input_path: Path, options: dict[str, Any], label: str) -> Job:
        """Make ``folder`` a queued job reading ``input_path`` with ``options`` (already checked)."""
        job = Job(folder)
        spec = {"input": str(input_path), "options": {**self.defaults, **options}, "label": label}
        write_text_atomically(folder / "job.json", json.dumps(spec, indent=1))
        job.set_state("queued")
        self._wake.set()
        return job

    def status(self, job: Job) -> str:
        """``queued``, ``running``, ``done``, ``failed``, ``stopped`` or ``running elsewhere``."""
        with self._lock:
            own = self._current[1].pid if self._current and self._current[0] == job else None
        status = job.state["status"]
        if status != "done" and own is None and job.lock_holder():
            return "running elsewhere"
        return status

    def cancel(self, job: Job) -> None:
        """Stop a running job (as Ctrl-C: resumable) or take a queued one off the queue."""
        with self._lock:
            if self._current and self._current[0] == job:
                self._stopping.add(job.id)
                self._current[1].send_signal(signal.SIGTERM)
            elif job.state["status"] == "queued":
                job.set_state("stopped", "cancelled before it started")

    def resume(self, job: Job) -> None:
        """Queue a stopped or failed job again: it continues from its run store."""
        if job.state["status"] in ("stopped", "failed"):
            job.set_state("queued", "resumes from its run store")
            self._wake.set()

    def _next(self) -> Job | None:
        for job in self.jobs():
            if job.state["status"] == "queued" and job.lock_holder() is None:
                return job
        return None

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        """Run ``job``'s worker to its end and record how it ended."""
        with open(job.log, "a") as log:
            log.write(f"{RUN_MARK} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            log.flush()
            with self._lock:
                job.set_state("running")
                worker = subprocess.Popen([sys.executable, "-m", "rdengine.engine.serve.worker", str(job.folder),
                                           str(os.getpid())], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                self._current = (job, worker)
            code = worker.wait()
        with self._lock:
            self._current = None
            stopped = job.id in self._stopping
            self._stopping.discard(job.id)
        if code == 0:
            job.set_state("done")
        elif stopped or code == STOPPED_EXIT:
            job.set_state("stopped", "stopped: resume continues from its run store")
        else:
            job.set_state("failed", last_error(job.log) or f"the worker ended with exit status {code}")


def last_error(log: Path) -> str | None:
    """The last ``error: ...`` line of a job's log, without the prefix."""
    lines = [line[7:].strip() for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
    return lines[-1] if lines else None

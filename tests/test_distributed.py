"""One video across a Dask cluster (`process --workers N` / `--scheduler ADDRESS`): the same bytes as a
single process at the same thread count, on a LocalCluster and on separately started scheduler and
worker processes, also when a worker is killed in the middle of the snippet stage."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdengine.engine.testing.synthetic_clip import write_clip
from rdengine.storage.run_store import RunStore

from rdengine.engine.testing.processes import run_rdengine

pytestmark = pytest.mark.slow

ENGINE = ("--preset", "full", "--res", "64", "--dilations", "1", "4", "--refine-steps", "2", "--dtype", "fp32",
          "--device", "cpu", "--batch-size", "2", "--unit-frames", "8", "--unit-seconds", "0.01", "--threads", "1",
          "--save", "npy", "--save", "exr", "--save", "mp4", "--shots", "none")


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file (not the run store) by its path in ``out``."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "run.zarr" not in p.parts}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("dist") / "clip.mp4", frames=64, width=64, height=48)


@pytest.fixture(scope="module")
def single(video, tiny_checkpoint, tmp_path_factory) -> dict[str, bytes]:
    """The single-process run at one thread: the reference."""
    out = tmp_path_factory.mktemp("single")
    proc = run_rdengine("process", video, "-o", out, "--checkpoint", tiny_checkpoint, *ENGINE, "-q")
    assert proc.returncode == 0, proc.stderr
    return outputs(out)


def test_local_cluster_gives_the_bytes_of_one_process(video, tiny_checkpoint, single, tmp_path):
    out = tmp_path / "out"
    proc = run_rdengine("process", video, "-o", out, "--checkpoint", tiny_checkpoint, *ENGINE, "--workers", "2",
                        "--log-format", "plain")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    started = [k for k, line in enumerate(lines) if re.fullmatch(
        r"note: units run as tasks on local cluster, 2 workers \(slot=1 each\): started and the model loaded on "
        r"every worker in \d+\.\d s", line)]
    ingest = [k for k, line in enumerate(lines) if line.startswith("[ingest] start")]
    assert len(started) == 1 and ingest and started[0] < ingest[0], proc.stderr[-3000:]  # start-up apart from ingest
    assert "[snippets] done" in proc.stderr and "[refine-decode] done" in proc.stderr
    assert outputs(out).keys() == single.keys() and outputs(out) == single
    assert not (out / "run.zarr.lock").exists()
    again = run_rdengine("process", video, "-o", out, "--checkpoint", tiny_checkpoint, *ENGINE, "--workers", "2")
    assert again.returncode == 0 and "all reused" in again.stdout, again.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snippet_records(store: Path) -> int:
    folder = store / "_units" / "snippets"
    return sum(1 for p in folder.glob("*/zarr.json")) if folder.is_dir() else 0


def test_external_cluster_survives_a_killed_worker_with_the_same_bytes(video, tiny_checkpoint, single, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    daemons: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemons.append(proc)
        return proc

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        workers = [start("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                         "--resources", "slot=1", "--no-dashboard") for _ in range(2)]
        out = tmp_path / "out"
        run = subprocess.Popen([sys.executable, "-m", "rdengine.cli", "process", str(video), "-o", str(out),
                                "--checkpoint", str(tiny_checkpoint), *ENGINE, "--scheduler", address,
                                "--log-format", "plain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while snippet_records(out / "run.zarr") < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()[1][-3000:]
        killed_at = snippet_records(out / "run.zarr")
        os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its nanny: gone for good
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        assert f"units run as tasks on scheduler {address}" in stderr
        store = RunStore(out / "run.zarr")
        assert len(store.done_units("snippets")) > killed_at  # the survivor finished the stage
        assert outputs(out) == single
    finally:
        for proc in reversed(daemons):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_cluster_options_are_checked_first(video, tiny_checkpoint, tmp_path):
    both = run_rdengine("process", video, "-o", tmp_path / "o", "--checkpoint", tiny_checkpoint, "--workers", "2",
                        "--scheduler", "tcp://127.0.0.1:1")
    assert both.returncode == 2 and "cannot be combined" in both.stderr and "Traceback" not in both.stderr
    scheme = run_rdengine("process", video, "-o", tmp_path / "o", "--checkpoint", tiny_checkpoint,
                          "--scheduler", "http://x:1")
    assert scheme.returncode == 2 and "unknown protocol" in scheme.stderr and not (tmp_path / "o").exists()


def test_batch_spreads_a_long_video_over_the_cluster(video, tiny_checkpoint, single, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "long.mp4").write_bytes(video.read_bytes())
    write_clip(archive / "short.mp4", frames=12, width=64, height=48)
    out = tmp_path / "out"
    proc = run_rdengine("batch", archive, "-o", out, "--checkpoint", tiny_checkpoint, *ENGINE, "--workers", "2",
                        "--split-frames", "30", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[batch] long: 64 frames, its units spread over the cluster" in proc.stderr
    assert any(line.startswith("[long] [snippets]") for line in proc.stderr.splitlines())
    long = {k.replace("long_", "clip_", 1): v for k, v in outputs(out / "long").items() if not k.endswith(".json")}
    assert long == {k: v for k, v in single.items() if not k.endswith(".json")}  # the sidecar names its files
    assert (out / "short" / "short_depth.npy").exists()

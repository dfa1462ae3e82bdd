"""Start-up latency of the command line: how long a fresh ``rdengine`` process takes to answer.

    rdengine bench startup [--repeat 5]

Each figure is a new process started as a user starts it (``python -m rdengine.cli ...``),
timed from just before the start to its answer: the exit for ``--help``, ``--version``,
``process --help`` and an option error (``--res abc``, and ``--colormap Nope``, which has to
ask matplotlib); for ``process`` on a small clip (tiny random checkpoint), the first line it
prints (the run is then stopped with SIGTERM, as a job scheduler would). Also ``import
rdengine`` and ``import rdengine.cli``, and the modules the latter loads of those the command
line must not load up front. Reports the median and the worst of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import write_clip

HEAVY = ("torch", "diffusers", "transformers", "zarr", "av", "scenedetect", "dask", "distributed", "matplotlib",
         "scipy", "xarray")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rdengine.cli", *map(str, args)]


def seconds_to_exit(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def seconds_to_first_line(cmd: list[str]) -> tuple[float, str]:
    """Seconds until the process prints its first line (stdout or stderr), and the line; then SIGTERM."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = child.stderr.readline()
    elapsed = time.perf_counter() - started
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    return elapsed, line.strip()


def loaded_heavy_modules(module: str) -> list[str]:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per figure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rdengine-startup-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny")
        clip = write_clip(tmp / "clip.mp4", frames=24, width=64, height=48)
        run = ("process", clip, "-o", None, "--checkpoint", checkpoint, "--res", "64", "--device", "cpu",
               "--log-format", "plain")
        exits = {
            "import rdengine": [sys.executable, "-c", "import rdengine"],
            "import rdengine.cli": [sys.executable, "-c", "import rdengine.cli"],
            "rdengine --help": command("--help"),
            "rdengine --version": command("--version"),
            "rdengine process --help": command("process", "--help"),
            "option error (--res abc)": command("process", clip, "-o", tmp / "never", "--res", "abc"),
            "option error (--colormap Nope)": command("process", clip, "-o", tmp / "never", "--colormap", "Nope"),
        }
        rows = {name: [seconds_to_exit(cmd) for _ in range(args.repeat)] for name, cmd in exits.items()}
        first = [seconds_to_first_line(command(*(a if a is not None else tmp / f"out{i}" for a in run)))
                 for i in range(args.repeat)]
        rows["process: first line"] = [seconds for seconds, _ in first]
    print(f"start-up of fresh processes ({args.repeat} each; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    print(f"  {'':34} {'median':>8} {'worst':>8}")
    for name, times in rows.items():
        print(f"  {name:34} {statistics.median(times):7.2f}s {max(times):7.2f}s")
    print(f"  first line of process: {first[0][1]!r}")
    heavy = loaded_heavy_modules("rdengine.cli")
    print(f"  heavy modules loaded by 'import rdengine.cli': {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()

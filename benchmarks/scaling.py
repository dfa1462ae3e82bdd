"""Peak RSS and wall time of ``rdengine process`` against video length (memory must stay flat).

Each run is a fresh child process on a synthetic clip of the given length; its peak RSS
comes from ``wait4`` (``ru_maxrss``), so it covers everything the process ever held.

    python -m rdengine.benchmarks.scaling --frames 300 1200        # issue 2 memory check
    python -m rdengine.benchmarks.scaling --frames 250 1000 4000   # `rdengine bench scaling`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..engine.random_checkpoint import write_random_checkpoint
from ..storage.synthetic_clip import write_clip


def measure_process(clip: Path, out_dir: Path, checkpoint: Path, args: list[str]) -> dict:
    """Run ``rdengine process`` in a child; returns seconds and peak RSS in MiB."""
    cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out_dir),
           "--checkpoint", str(checkpoint), "--device", "cpu", "--quiet", "--save", "npy", *args]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rdengine process failed: {child.stderr.read().decode()[-500:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def run(frames: list[int], width: int = 128, height: int = 96, preset: str = "fast",
        extra: list[str] | None = None, workdir: Path | None = None) -> list[dict]:
    """Measure one run per frame count on same-size clips; returns one row per run."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        rows = []
        for count in frames:
            clip = write_clip(tmp / f"clip{count}.mp4", frames=count, width=width, height=height, fps=25)
            row = measure_process(clip, tmp / f"out{count}", checkpoint,
                                  ["--preset", preset, "--res", str(max(width, height)), *(extra or [])])
            row.update(frames=count, width=width, height=height, preset=preset,
                       frames_per_s=count / row["seconds"])
            rows.append(row)
            print(f"{count:6d} frames  {row['seconds']:8.1f} s  {row['frames_per_s']:7.2f} frames/s  "
                  f"peak RSS {row['peak_rss_mib']:8.1f} MiB", flush=True)
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["rss_vs_first"] = row["peak_rss_mib"] / base
    print(f"peak RSS, longest vs shortest: {rows[-1]['rss_vs_first']:.3f}x (flat means <= 1.15x)")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 1200])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args, extra = parser.parse_known_args(argv)
    rows = run(args.frames, args.width, args.height, args.preset, extra)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

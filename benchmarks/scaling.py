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
import threading
import time
from pathlib import Path

from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import write_clip


def _proc_rss(pid: int) -> dict[str, int]:
    """``RssAnon`` / ``RssFile`` / ``RssShmem`` of a live process in KiB (Linux; empty elsewhere)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines if line.startswith("Rss"))}


def measure_process(clip: Path, out_dir: Path, checkpoint: Path, args: list[str], threads: int | None = None) -> dict:
    """Run ``rdengine process`` in a child; returns seconds and peak RSS in MiB.

    ``peak_rss_mib`` is ``ru_maxrss`` from ``wait4``: everything resident, including pages of
    memory-mapped output files (the npy export writes through a memory map, so those pages
    grow with T although the kernel can drop them at will). ``peak_anon_mib`` (Linux) is the
    peak of the child's anonymous memory (``RssAnon``, sampled every 20 ms): what the engine
    itself holds. ``threads``: torch intra-op threads of the child (``OMP_NUM_THREADS``).
    """
    cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out_dir),
           "--checkpoint", str(checkpoint), "--device", "cpu", "--quiet", "--save", "npy", *args]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            for key, value in _proc_rss(child.pid).items():
                if key in peak:
                    peak[key] = max(peak[key], value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rdengine process failed: {child.stderr.read().decode()[-500:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024,
            "peak_anon_mib": peak["RssAnon"] / 1024 or None, "peak_file_mib": peak["RssFile"] / 1024 or None}


def run(frames: list[int], width: int = 128, height: int = 96, preset: str = "fast",
        extra: list[str] | None = None, workdir: Path | None = None, threads: int | None = None) -> list[dict]:
    """Measure one run per frame count on same-size clips; returns one row per run."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        rows = []
        for count in frames:
            clip = write_clip(tmp / f"clip{count}.mp4", frames=count, width=width, height=height, fps=25)
            row = measure_process(clip, tmp / f"out{count}", checkpoint,
                                  ["--preset", preset, "--res", str(max(width, height)), *(extra or [])], threads)
            row.update(frames=count, width=width, height=height, preset=preset,
                       frames_per_s=count / row["seconds"], load_avg_1m=os.getloadavg()[0])
            rows.append(row)
            anon = f"  anonymous {row['peak_anon_mib']:8.1f} MiB" if row["peak_anon_mib"] else ""
            print(f"{count:6d} frames  {row['seconds']:8.1f} s  {row['frames_per_s']:7.2f} frames/s  "
                  f"peak RSS {row['peak_rss_mib']:8.1f} MiB{anon}", flush=True)
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["rss_vs_first"] = row["peak_rss_mib"] / base
        if row["peak_anon_mib"] and rows[0]["peak_anon_mib"]:
            row["anon_vs_first"] = row["peak_anon_mib"] / rows[0]["peak_anon_mib"]
    print(f"peak RSS, longest vs shortest: {rows[-1]['rss_vs_first']:.3f}x (flat means <= 1.15x)")
    if "anon_vs_first" in rows[-1]:
        print(f"peak anonymous memory, longest vs shortest: {rows[-1]['anon_vs_first']:.3f}x")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 1200])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--threads", type=int, help="torch threads of each child (OMP_NUM_THREADS)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args, extra = parser.parse_known_args(argv)
    rows = run(args.frames, args.width, args.height, args.preset, extra, threads=args.threads)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

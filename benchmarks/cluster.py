"""One video on a Dask cluster: snippet-stage speed-up of N workers over 1, and a projection to N GPUs.

Each run is ``rdengine process --workers W --threads 1`` in a fresh child process on the same
synthetic clip (tiny random checkpoint), runs of different W alternating so the machine's load
hits both alike; the snippet stage's time comes from the run's JSON progress events.

    rdengine bench cluster --workers 1 2 --pairs 3

The projection to N GPUs uses what one run measures per snippet unit: the bytes a task
reads (its window of RGB latents) and writes (its scratch and sample shards), and this
process's serial cost per unit (writing the unit's record, measured here); with a device
that computes a unit in ``c`` seconds and a shared file system of ``bandwidth`` bytes/s per
worker, ``speed-up(N) = N * c / (c + io) `` capped by the client at ``(c + io) / serial``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import write_clip
from ..storage.run_store import RunStore
from .film import stage_seconds

ENGINE = ("--device", "cpu", "--dtype", "fp32", "--threads", "1", "--save", "npy", "--shots", "none",
          "--log-format", "json", "--scratch", "latent", "--keep-intermediates")  # kept: to measure unit writes


def one_run(clip: Path, out: Path, checkpoint: Path, workers: int, args: list[str]) -> float:
    cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
           str(checkpoint), *ENGINE, "--workers", str(workers), "--overwrite", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"rdengine process failed: {proc.stderr[-800:]}")
    seconds = stage_seconds(proc.stderr).get("snippets")
    if seconds is None:
        raise RuntimeError(f"no snippet stage in the run's output: {proc.stderr[-800:]}")
    return seconds


def unit_traffic(store_path: Path) -> dict:
    """Per snippet unit: bytes read (RGB latents window) and written (scratch and samples shards)."""
    store = RunStore(store_path)
    info = store.info
    units = len(store.done_units("snippets"))
    written = sum(store.disk_bytes(name) for name in store.array_names() if name.startswith(("snippets/", "samples/")))
    h, w = info["latent_size"]
    itemsize = 4
    window = info["plan"]["snippet_unit"] + max(store.manifest["config"]["dilations"]) * 2
    return {"units": units, "written_bytes": written / max(units, 1), "read_bytes": window * 4 * h * w * itemsize}


def record_seconds(samples: int = 200) -> float:
    """This process's cost of one unit record (an fsynced small file), the client's serial part."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create_or_resume(Path(tmp) / "run.zarr", {"bench": "records"})
        started = time.perf_counter()
        for i in range(samples):
            store.mark_done("snippets", f"c{i:07d}", {"min": {"0": -1.0}})
        return (time.perf_counter() - started) / samples


def projection(unit_compute: list[float], traffic: dict, serial: float, bandwidth: float,
               gpus: list[int]) -> list[dict]:
    """Projected snippet-stage speed-up on N GPUs for per-unit device times ``unit_compute``."""
    io = (traffic["read_bytes"] + traffic["written_bytes"]) / bandwidth
    rows = []
    for c in unit_compute:
        rows.append({"unit_seconds": c, "io_seconds": io,
                     "speedup": {n: round(min(n * c / (c + io), (c + io) / serial if serial else n), 2) for n in gpus}})
    return rows


def run(workers: list[int], frames: int, width: int, height: int, pairs: int, bandwidth: float,
        unit_frames: int, workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rdengine-cluster-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        clip = write_clip(tmp / "clip.mp4", frames=frames, width=width, height=height, fps=24)
        args = ["--res", str(max(width, height)), "--unit-frames", str(unit_frames)]
        times: dict[int, list[float]] = {w: [] for w in workers}
        for _ in range(pairs):
            for w in workers:
                times[w].append(one_run(clip, tmp / f"out{w}", checkpoint, w, args))
        traffic = unit_traffic(tmp / f"out{workers[0]}" / "run.zarr")
    median = {w: statistics.median(t) for w, t in times.items()}
    base = median[workers[0]]
    serial = record_seconds()
    per_unit_cpu = base / max(traffic["units"], 1)
    report = {"frames": frames, "size": f"{width}x{height}", "pairs": pairs, "snippet_seconds": times,
              "median_seconds": median, "speedup": {w: base / median[w] for w in workers},
              "units": traffic["units"], "unit_read_bytes": traffic["read_bytes"],
              "unit_written_bytes": traffic["written_bytes"], "client_seconds_per_unit": serial,
              "cpu_seconds_per_unit": per_unit_cpu, "bandwidth_bytes_per_s": bandwidth,
              "projection": projection([per_unit_cpu, 2.0, 0.5, 0.1], traffic, serial, bandwidth, [1, 2, 4, 8, 16])}
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['frames']} frames {report['size']}, {report['units']} snippet units, {report['pairs']} runs "
             f"per worker count (median):"]
    for w, seconds in report["median_seconds"].items():
        lines.append(f"  {w} worker(s): snippet stage {seconds:7.2f} s   speed-up {report['speedup'][w]:.2f}x")
    lines.append(f"per unit: reads {report['unit_read_bytes'] / 1e6:.2f} MB, writes "
                 f"{report['unit_written_bytes'] / 1e6:.2f} MB, client record "
                 f"{report['client_seconds_per_unit'] * 1e3:.2f} ms, CPU compute {report['cpu_seconds_per_unit']:.3f} s")
    lines.append("projected snippet-stage speed-up on N GPUs (shared storage "
                 f"{report['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s per worker):")
    for row in report["projection"]:
        cells = "  ".join(f"N={n}: {s:.1f}x" for n, s in row["speedup"].items())
        lines.append(f"  unit computed in {row['unit_seconds']:.3f} s (+{row['io_seconds'] * 1e3:.1f} ms I/O): {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (first: the base)")
    parser.add_argument("--frames", type=int, default=192, help="clip length")
    parser.add_argument("--size", default="256x144", help="synthetic clip WxH, processed at its own size")
    parser.add_argument("--pairs", type=int, default=3, help="runs per worker count, alternating")
    parser.add_argument("--unit-frames", type=int, default=16, help="snippet starts per unit (task)")
    parser.add_argument("--bandwidth", type=float, default=1e9, help="shared storage bytes/s per worker (projection)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    report = run(args.workers, args.frames, width, height, args.pairs, args.bandwidth, args.unit_frames)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=lambda v: float(np.asarray(v))))
        print(f"wrote {args.json}")

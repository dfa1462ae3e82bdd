"""Film-scale benchmark: time per frame, peak memory, and the run store's disk use and files.

Each run is ``rdengine process`` in a fresh child process on a synthetic clip written
frame by frame (never held in memory), with the tiny random checkpoint. While it runs, a
sampler reads the child's resident memory and walks the run store every ``interval``
seconds; the store's bytes are counted as allocated on disk (``du``), and "intermediate"
bytes are everything in the store but the final ``depth`` array.

    rdengine bench film --frames 2000 10000 50000 --size 64x48          # flat cost per frame
    rdengine bench film --frames 300 --size 768x432 --scratch latent     # bytes per frame at 768 px

Every row is projected to a 2-hour 24 fps film (172,800 frames) at its own frame size:
bytes scale with frames; of the files, the shards (``c/...``) scale with frames and the
metadata and gathered records stay as they are.
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

FILM_FRAMES = 2 * 3600 * 24


def disk_use(folder: Path) -> tuple[int, int, int, int]:
    """(allocated bytes of the store, of its ``depth`` array, file count, shard files) of a run store folder."""
    total = depth = files = shards = 0
    for root, _, names in os.walk(folder):
        parts = Path(root).relative_to(folder).parts
        for name in names:
            try:
                used = os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # replaced meanwhile (atomic writes)
                continue
            total += used
            files += 1
            shards += "c" in parts
            if parts[:1] == ("depth",):
                depth += used
    return total, depth, files, shards


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(clip: Path, out: Path, checkpoint: Path, args: list[str], interval: float) -> dict:
    """One ``rdengine process`` run: wall time, peak RSS, peak and final store use."""
    store = out / "run.zarr"
    cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
           str(checkpoint), "--device", "cpu", "--save", "npy", "--quiet", *args]
    peak = {"store": 0, "intermediate": 0, "rss": 0.0, "files": 0}
    done = threading.Event()
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sample() -> None:
        while not done.wait(interval):
            total, depth, files, _ = disk_use(store)
            peak["files"] = max(peak["files"], files)
            peak["store"] = max(peak["store"], total)
            peak["intermediate"] = max(peak["intermediate"], total - depth)
            peak["rss"] = max(peak["rss"], rss_mib(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rdengine process failed: {child.stderr.read().decode()[-800:]}")
    total, depth, files, shards = disk_use(store)
    info = json.loads((store / "zarr.json").read_text())["attributes"]["info"]
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "peak_store": max(peak["store"], total),
            "peak_intermediate": max(peak["intermediate"], total - depth), "final_store": total,
            "final_intermediate": total - depth, "files": files, "shard_files": shards,
            "peak_files": max(peak["files"], files), "scratch": info["plan"]["scratch"],
            "frame_unit": info["frame_unit"], "snippet_unit": info["plan"]["snippet_unit"]}


def run(frames: list[int], width: int, height: int, preset: str = "fast", extra: list[str] | None = None,
        interval: float = 1.0, workdir: Path | None = None) -> list[dict]:
    """One measured run per frame count; prints and returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rdengine-film-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        for count in frames:
            clip = write_clip(tmp / f"clip{count}.mp4", frames=count, width=width, height=height, fps=24)
            row = measure(clip, tmp / f"out{count}", checkpoint,
                          ["--preset", preset, "--res", str(max(width, height)), *(extra or [])], interval)
            clip.unlink()
            per = {k: row[k] / count for k in ("peak_store", "peak_intermediate", "final_store",
                                               "final_intermediate")}
            row.update(frames=count, width=width, height=height, preset=preset,
                       seconds_per_frame=row["seconds"] / count,
                       **{f"{k}_per_frame": v for k, v in per.items()},
                       film={"intermediate_peak_gb": per["peak_intermediate"] * FILM_FRAMES / 1e9,
                             "intermediate_final_gb": per["final_intermediate"] * FILM_FRAMES / 1e9,
                             "store_final_gb": per["final_store"] * FILM_FRAMES / 1e9,
                             "files": round(row["files"] - row["shard_files"]
                                            + row["shard_files"] * FILM_FRAMES / count),
                             "hours_at_this_rate": row["seconds"] / count * FILM_FRAMES / 3600})
            rows.append(row)
            print(format_row(row), flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"{last['frames']} vs {first['frames']} frames: time per frame "
              f"{last['seconds_per_frame'] / first['seconds_per_frame']:.3f}x, peak RSS "
              f"{last['peak_rss_mib'] / first['peak_rss_mib']:.3f}x (flat means <= 1.15x)")
    return rows


def format_row(row: dict) -> str:
    film = row["film"]
    return (f"{row['frames']:6d} frames {row['width']}x{row['height']} ({row['scratch']} scratch): "
            f"{row['seconds_per_frame'] * 1000:7.1f} ms/frame, peak RSS {row['peak_rss_mib']:6.0f} MiB, "
            f"intermediates peak {row['peak_intermediate_per_frame'] / 1e6:6.3f} MB/frame, "
            f"final {row['final_intermediate_per_frame'] / 1e6:6.4f} MB/frame, store final "
            f"{row['final_store_per_frame'] / 1e6:6.3f} MB/frame, {row['files']} files (peak {row['peak_files']})\n"
            f"       2-hour 24 fps film at {row['width']}x{row['height']}: intermediates peak "
            f"{film['intermediate_peak_gb']:.1f} GB, final {film['intermediate_final_gb']:.2f} GB, store "
            f"{film['store_final_gb']:.1f} GB, ~{film['files']} files, {film['hours_at_this_rate']:.1f} h at this rate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench film", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 10000, 50000])
    parser.add_argument("--size", default="64x48", help="synthetic clip WxH (processed at its own size)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between store samples")
    parser.add_argument("--json", type=Path)
    args, extra = parser.parse_known_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = run(args.frames, width, height, args.preset, extra, args.interval)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

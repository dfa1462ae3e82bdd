"""Film-scale benchmark: time per frame, peak memory, and the run store's disk use and files.

Each run is ``rdengine process`` in a fresh child process on a synthetic clip written
frame by frame (never held in memory), with the tiny random checkpoint. Peak memory is the
run's own ``ru_maxrss`` (see ``LAUNCHER``). While it runs, a sampler walks the run store
every ``interval`` seconds (less often when a walk takes long, so that sampling costs under 5% of a core); the
store's bytes are counted as allocated on disk (``du``), and "intermediate" bytes are
everything in the store but the final ``depth`` array. Stage times come from the run's JSON
progress events.

    rdengine bench film --frames 2000 10000 50000 --size 64x48          # flat cost per frame
    rdengine bench film --frames 300 --size 768x432 --scratch latent     # bytes per frame at 768 px
    rdengine bench film --frames 24 --size 1280x720 7680x4320 --res 64  # memory against the source size

Each row also gives the peak RSS of a process that only decodes the clip as a run does
(``VideoSource.views``, nothing converted): the part of a run's memory that is the codec's.
``--x264-params`` sets how the clip is encoded (default: x264's own, B-frames and 3
reference frames; ``bframes=0:ref=1`` a low-delay stream, ``keyint=1`` all intra).

Each row ends with the device-work ledger (``engine.ledger``): UNet passes, VAE encodes and
decodes per frame and their TFLOP on the real architecture at the run's size.

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
from itertools import product
from pathlib import Path
from typing import Callable

from ..engine.ledger import count_flops, format_ledger, ledger, recorded_work
from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import write_clip
from ..storage.run_store import RunStore

FILM_FRAMES = 2 * 3600 * 24

# Runs the command as its own child and writes that child's peak RSS (KiB) to argv[1]. A
# process's ru_maxrss includes the memory of whatever process exec'd it (Linux records the
# old address space's peak at exec, and spawn shares the parent's until then), and this
# benchmark's own process holds a checkpoint and a freshly encoded clip: the run is therefore
# started from this small launcher, whose own footprint is a bare interpreter.
LAUNCHER = """import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
# Decodes the clip (argv[1]) as a run does, converting nothing: the codec's share of a run's memory.
DECODE_ONLY = """import sys
from rdengine.storage.inputs import open_input
for view in open_input(sys.argv[1]).views():
    del view
"""


def peak_rss_mib(cmd: list[str], maxrss: Path) -> float:
    """Peak RSS (MiB) of ``cmd`` run to its end from ``LAUNCHER``."""
    subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(maxrss), *cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return int(maxrss.read_text()) / 1024


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


def run_sampled(cmd: list[str], sample: Callable[[threading.Event], None]) -> tuple[str, float]:
    """Run ``cmd`` (an ``rdengine process``) while ``sample(done)`` runs on a thread until ``done``
    is set at the child's exit; returns its stderr and wall seconds (raises when it failed)."""
    done = threading.Event()
    sampler = threading.Thread(target=sample, args=(done,), daemon=True)
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler.start()
    log = child.stderr.read().decode()
    status = child.wait()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"rdengine process failed: {log[-800:]}")
    return log, seconds


def measure(clip: Path, out: Path, checkpoint: Path, args: list[str], interval: float) -> dict:
    """One ``rdengine process`` run: wall time, peak RSS, peak and final store use."""
    store = out / "run.zarr"
    cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
           str(checkpoint), "--device", "cpu", "--save", "npy", "--log-format", "json", *args]
    peak = {"store": 0, "intermediate": 0, "files": 0}
    maxrss = out.with_name(out.name + ".maxrss")

    def sample(done: threading.Event) -> None:
        wait = interval
        while not done.wait(wait):
            walk = time.perf_counter()
            total, depth, files, _ = disk_use(store)
            wait = max(interval, 20 * (time.perf_counter() - walk))
            peak["files"] = max(peak["files"], files)
            peak["store"] = max(peak["store"], total)
            peak["intermediate"] = max(peak["intermediate"], total - depth)

    log, seconds = run_sampled([sys.executable, "-I", "-S", "-c", LAUNCHER, str(maxrss), *cmd], sample)
    total, depth, files, shards = disk_use(store)
    info = json.loads((store / "zarr.json").read_text())["attributes"]["info"]
    return {"seconds": seconds, "peak_rss_mib": int(maxrss.read_text()) / 1024, "peak_store": max(peak["store"], total),
            "peak_intermediate": max(peak["intermediate"], total - depth), "final_store": total,
            "final_intermediate": total - depth, "files": files, "shard_files": shards,
            "peak_files": max(peak["files"], files), "scratch": "/".join(sorted(set(info["plan"]["scratch"]))),
            "frame_unit": info["frame_unit"], "stage_seconds": stage_seconds(log),
            "work": recorded_work(RunStore(store, mode="r")), "latent_size": info["latent_size"]}


def stage_seconds(log: str) -> dict[str, float]:
    """Seconds of each stage, from the ``stage_end`` events of a run's JSON progress (the time a
    stage worked: the stages of the shot phase run side by side)."""
    seconds = {}
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "stage_end":  # the stage's own work where given
            spent = float(event.get("working_seconds", event["seconds"]))
            seconds[event["stage"]] = seconds.get(event["stage"], 0.0) + spent
    return seconds


def run(frames: list[int], sizes: list[tuple[int, int]], preset: str = "fast", extra: list[str] | None = None,
        interval: float = 1.0, workdir: Path | None = None, x264_params: str = "") -> list[dict]:
    """One measured run per frame size and count (``sizes``: ``(width, height)``); prints and returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rdengine-film-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        for (width, height), count in product(sizes, frames):
            name = f"{width}x{height}_{count}"
            clip = write_clip(tmp / f"clip{name}.mp4", frames=count, width=width, height=height, fps=24,
                              options={"x264-params": x264_params} if x264_params else None)
            decoding = peak_rss_mib([sys.executable, "-c", DECODE_ONLY, str(clip)], tmp / "decode.maxrss")
            row = measure(clip, tmp / f"out{name}", checkpoint,
                          ["--preset", preset, "--res", str(max(width, height)), *(extra or [])], interval)
            row["decode_rss_mib"] = decoding
            work = row.pop("work")
            row["ledger"] = ledger(work, count, work.get("snippets", {}).get("unet", 0),
                                   count_flops(tuple(row.pop("latent_size")), 3))
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
        print(f"{last['frames']} frames {last['width']}x{last['height']} vs {first['frames']} frames "
              f"{first['width']}x{first['height']}: time per frame "
              f"{last['seconds_per_frame'] / first['seconds_per_frame']:.3f}x, peak RSS "
              f"{last['peak_rss_mib'] / first['peak_rss_mib']:.3f}x ({last['peak_rss_mib'] - first['peak_rss_mib']:+.0f} "
              f"MiB, of which decoding alone {last['decode_rss_mib'] - first['decode_rss_mib']:+.0f} MiB)")
    return rows


def format_row(row: dict) -> str:
    film = row["film"]
    return (f"{row['frames']:6d} frames {row['width']}x{row['height']} ({row['scratch']} scratch): "
            f"{row['seconds_per_frame'] * 1000:7.1f} ms/frame, peak RSS {row['peak_rss_mib']:6.0f} MiB "
            f"(decoding alone {row['decode_rss_mib']:.0f}), "
            f"intermediates peak {row['peak_intermediate_per_frame'] / 1e6:6.3f} MB/frame, "
            f"final {row['final_intermediate_per_frame'] / 1e6:6.4f} MB/frame, store final "
            f"{row['final_store_per_frame'] / 1e6:6.3f} MB/frame, {row['files']} files (peak {row['peak_files']})\n"
            f"       2-hour 24 fps film at {row['width']}x{row['height']}: intermediates peak "
            f"{film['intermediate_peak_gb']:.1f} GB, final {film['intermediate_final_gb']:.2f} GB, store "
            f"{film['store_final_gb']:.1f} GB, ~{film['files']} files, {film['hours_at_this_rate']:.1f} h at this rate\n"
            "       ms/frame by stage: " + ", ".join(f"{stage} {seconds / row['frames'] * 1000:.1f}"
                                                   for stage, seconds in row["stage_seconds"].items())
            + "\n" + format_ledger(row["ledger"], row["frames"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench film", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 10000, 50000],
                        help="clip lengths, one run each")
    parser.add_argument("--size", nargs="+", default=["64x48"],
                        help="synthetic clip WxH, one or more (processed at its own size unless --res is given)")
    parser.add_argument("--x264-params", default="", help="how the clip is encoded, e.g. bframes=0:ref=1")
    parser.add_argument("--preset", default="fast", help="rdengine process preset; other options pass through")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between store samples")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args, extra = parser.parse_known_args(argv)
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.size]
    rows = run(args.frames, sizes, args.preset, extra, args.interval, x264_params=args.x264_params)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

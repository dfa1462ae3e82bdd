"""An edited film shot by shot: decodes per snippet frame, scratch in flight, and when shots are final.

A synthetic edit (shots of 2-10 s at 24 fps with one 60 s take; a cut list gives its cuts)
runs through ``rdengine process`` in a child process with the tiny random checkpoint. The
run is small on disk (``--res``), so the scratch budget is scaled to the same share of a
768x432 run: ``--scratch-budget`` GiB at 768x432 in fp16 become the bytes of as many maps at the
run's size. While it runs a sampler counts the snippet scratch on disk: the peak number of
snippet frames (maps) held, against the longest shot's and the whole film's. The run's JSON
progress gives when each shot's snippets started and when its outputs were complete; its
unit records give the device-work ledger (``engine.ledger``: decodes per snippet frame).

    rdengine bench edit --frames 5000 --size 64x36
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
from pathlib import Path

from ..engine.inspection import store_plan
from ..engine.ledger import count_flops, format_ledger, ledger, recorded_work
from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import encode_frames, synthetic_edit
from ..storage.run_store import RunStore
from .film import run_sampled, stage_seconds

FPS = 24
REFERENCE = (432, 768)  # the size the budget is given for, fp16 maps


def shot_lengths(frames: int, take_seconds: int, seed: int) -> list[int]:
    """Shots of 2-10 s with one ``take_seconds`` take near the middle, ``frames`` in all."""
    rng = random.Random(seed)
    lengths: list[int] = []
    while sum(lengths) < frames - take_seconds * FPS:
        lengths.append(rng.randint(2 * FPS, 10 * FPS))
    lengths.insert(len(lengths) // 2, take_seconds * FPS)
    lengths[-1] -= sum(lengths) - frames
    if lengths[-1] < FPS:
        lengths[-2] += lengths.pop()
    return lengths


def scratch_maps(store: Path) -> int:
    """Snippet frames held in the store's snippet scratch now (rows of its ``samples`` arrays)."""
    total = 0
    for meta in (store / "snippets").glob("b*/samples/zarr.json"):
        try:
            total += json.loads(meta.read_text())["shape"][0]
        except (OSError, ValueError, KeyError):
            continue  # released meanwhile
    return total


def run(frames: int, size: tuple[int, int], take: int, budget_gib: float, extra: list[str], seed: int = 0) -> dict:
    width, height = size
    lengths = shot_lengths(frames, take, seed)
    with tempfile.TemporaryDirectory(prefix="rdengine-edit-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "tiny", size="tiny")
        video, cuts = synthetic_edit(lengths, width, height, seed=seed)
        clip = encode_frames(tmp / "edit.mp4", video, fps=FPS)
        del video
        (tmp / "cuts.txt").write_text("\n".join(map(str, cuts)))
        map_bytes = 4 * width * height  # fp32 on the CPU
        budget = budget_gib * 2**30 * map_bytes / (2 * REFERENCE[0] * REFERENCE[1])
        out, store = tmp / "out", tmp / "out" / "run.zarr"
        cmd = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
               str(checkpoint), "--device", "cpu", "--res", str(max(width, height)), "--dtype", "fp32",
               "--shots", str(tmp / "cuts.txt"), "--scratch-budget", repr(budget / 2**30), "--save", "npy",
               "--save", "exr", "--log-format", "json", *extra]
        peak = {"maps": 0}

        def sample(done: threading.Event) -> None:
            while not done.wait(0.5):
                peak["maps"] = max(peak["maps"], scratch_maps(store))

        log, seconds = run_sampled(cmd, sample)
        events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        shots = [(e["shot"], e["state"], e["t"]) for e in events if e.get("event") == "shot"]
        run_store = RunStore(store, mode="r")
        facts = run_store.info
        work = recorded_work(run_store)
        _, plan = store_plan(run_store)
        per_shot = [plan.shot_maps(k) for k in range(len(plan.shots))]
        flops = count_flops(tuple(-(-side // 8) for side in REFERENCE), 3)
        report = ledger(work, frames, work["snippets"]["unet"], flops)
    return {"frames": frames, "size": [width, height], "shots": len(lengths), "take_frames": take * FPS,
            "shortest": min(lengths), "longest": max(lengths), "seconds": seconds, "stage_seconds": stage_seconds(log),
            "scratch": list(facts["plan"]["scratch"]), "budget_gib_at_768": budget_gib,
            "peak_scratch_maps": peak["maps"], "longest_shot_maps": max(per_shot), "film_maps": sum(per_shot),
            "first_shot_done": next(t for k, s, t in shots if k == 0 and s == "done"),
            "last_shot_snippets": next(t for k, s, t in shots if k == len(lengths) - 1 and s == "snippets"),
            "ledger": report}


def format_report(row: dict) -> str:
    map_768 = 2 * REFERENCE[0] * REFERENCE[1]
    kinds = {kind: row["scratch"].count(kind) for kind in ("depth", "latent")}
    return "\n".join([
        f"edit of {row['frames']} frames at {row['size'][0]}x{row['size'][1]}: {row['shots']} shots of "
        f"{row['shortest']}-{row['longest']} frames (a {row['take_frames']}-frame take), {row['seconds']:.0f} s",
        f"scratch: depth for {kinds['depth']} shot(s), latent for {kinds['latent']} "
        f"(budget {row['budget_gib_at_768']:g} GiB at 768x432 fp16)",
        f"snippet frames held in the scratch at the peak: {row['peak_scratch_maps']} (longest shot "
        f"{row['longest_shot_maps']}, whole film {row['film_maps']}); at 768x432 fp16 that peak is "
        f"{row['peak_scratch_maps'] * map_768 / 2**30:.2f} GiB raw, the film's would be "
        f"{row['film_maps'] * map_768 / 2**30:.1f} GiB",
        f"first shot complete at {row['first_shot_done']:.1f} s, last shot's snippets started at "
        f"{row['last_shot_snippets']:.1f} s",
        "seconds by stage (work): " + ", ".join(f"{k} {v:.1f}" for k, v in row["stage_seconds"].items()),
        format_ledger(row["ledger"], row["frames"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench edit", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000, help="length of the edit (default 5000)")
    parser.add_argument("--size", default="64x36", help="frame size WxH (default 64x36: 768x432's shape)")
    parser.add_argument("--take", type=int, default=60, help="seconds of the long take (default 60)")
    parser.add_argument("--scratch-budget", type=float, default=8.0,
                        help="GiB at 768x432 fp16, scaled to the run's size (default 8, the process default)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args, extra = parser.parse_known_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    row = run(args.frames, (width, height), args.take, args.scratch_budget, extra)
    print(format_report(row))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2, default=float))


if __name__ == "__main__":
    main()

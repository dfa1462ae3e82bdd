"""Shot detection cost: the detector's time per frame, and what it adds to the ingest stage.

    rdengine bench shots [--size 768x432] [--frames 240] [--pairs 5]

The ingest figure runs the pipeline's ingest stage (tiny model, loaded once) on one synthetic
clip without cuts, without and with the cut detector as ``--shots none`` and ``--shots auto``
run it, in turn, ``--pairs`` times, and reports the median ingest time of each and their
ratio. Detection sees every decoded frame in ingest's loader thread, beside the encoding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ..engine.execution import LocalExecutor
from ..engine.model import Model, load_model
from ..engine.pipeline import detected
from ..engine.plan import frame_unit
from ..engine.progress import Progress
from ..engine.shots.detector import CutDetector
from ..engine.stages.ingest import frame_geometry, ingest
from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import synthetic_frames, write_clip
from ..storage.inputs import open_input
from ..storage.run_store import RunStore


def detector_ms(width: int, height: int, frames: int = 120) -> float:
    """Milliseconds per frame of ``CutDetector.feed`` (best of three passes)."""
    clip = synthetic_frames(frames, width, height)
    best = float("inf")
    for _ in range(3):
        detector = CutDetector(fps=25.0)
        started = time.perf_counter()
        for i, frame in enumerate(clip):
            detector.feed(i, frame)
        detector.cuts()
        best = min(best, (time.perf_counter() - started) / frames)
    return best * 1000


def ingest_seconds(clip: Path, folder: Path, model: Model, detect: bool) -> float:
    """Seconds of the ingest stage into a fresh run store, with or without cut detection."""
    progress = Progress("quiet")
    source = open_input(str(clip))
    size = (source.info.height, source.info.width)
    geometry = frame_geometry(size, max(size), "pad", progress)
    store = RunStore.create_or_resume(folder / "run.zarr", {"bench": "shots"}, overwrite=True)
    frames = source.views()
    if detect:
        frames = detected(frames, CutDetector(fps=source.info.fps))
    executor = LocalExecutor(model)
    executor.bind(store)
    started = time.perf_counter()
    ingest(store, executor, frames, source.info.frames_estimate, size, geometry, frame_unit(geometry), progress)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench shots", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x432", help="synthetic clip WxH, processed at its own size")
    parser.add_argument("--frames", type=int, default=240, help="clip length")
    parser.add_argument("--pairs", type=int, default=5, help="runs of each, alternating")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"detector: {detector_ms(width, height):.3f} ms/frame at {width}x{height}")
    with tempfile.TemporaryDirectory(prefix="rdengine-shots-") as tmp:
        tmp = Path(tmp)
        model = load_model(str(write_random_checkpoint(tmp / "tiny")), "cpu", "fp32", "sdpa")
        clip = write_clip(tmp / "clip.mp4", frames=args.frames, width=width, height=height, fps=24)
        times: dict[str, list[float]] = {"none": [], "auto": []}
        for _ in range(args.pairs):
            for shots in times:
                times[shots].append(ingest_seconds(clip, tmp, model, shots == "auto"))
    none, auto = (statistics.median(times[k]) for k in ("none", "auto"))
    ratios = [a / n for a, n in zip(times["auto"], times["none"])]
    print(f"ingest of {args.frames} frames at {width}x{height}: --shots none {none:.2f} s, auto {auto:.2f} s "
          f"(medians of {args.pairs}); auto/none per pair: median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}")


if __name__ == "__main__":
    main()

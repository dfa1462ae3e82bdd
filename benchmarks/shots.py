"""Shot detection: its accuracy on synthetic edits, its time per frame, and what it adds to ingest.

    rdengine bench shots --accuracy [--edits 24] [--size 192x108]
    rdengine bench shots [--size 768x432] [--frames 240] [--pairs 5]

The accuracy table runs every detector setting over ``--edits`` synthetic edits
(``synthetic_clip.benchmark_edits``: calm and fast-panning shots joined by hard cuts and
fades through black, white flashes inside shots), each encoded to H.264 and decoded as a run
decodes it. A detected cut is right when it is within a frame of a hard cut or inside a fade
(each shot change counts once); precision = right cuts / cuts found, recall = shot changes
found / shot changes; "after fast" is the recall of hard cuts that end a fast shot.

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
from dataclasses import dataclass
from pathlib import Path

from ..engine.execution import LocalExecutor
from ..engine.model import Model, load_model
from ..engine.pipeline import detected
from ..engine.plan import frame_unit
from ..engine.progress import Progress
from ..engine.shots.detector import DEFAULT_METHOD, DEFAULT_THRESHOLDS, FLASH_FRAMES, CutDetector
from ..engine.stages.ingest import frame_geometry, ingest
from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import SyntheticEdit, benchmark_edits, encode_frames, synthetic_frames, write_clip
from ..storage.inputs import open_input
from ..storage.run_store import RunStore


SETTINGS = [("content", 27.0, 0), ("content", 45.0, 0), ("adaptive", 3.0, 0), ("adaptive", 2.0, 0),
            ("adaptive", 1.5, 0), ("content", 27.0, FLASH_FRAMES), ("adaptive", 2.0, FLASH_FRAMES),
            ("adaptive", 1.8, FLASH_FRAMES), ("adaptive", 1.5, FLASH_FRAMES), ("adaptive", 1.2, FLASH_FRAMES)]
"""(method, threshold, flash check frames) of each row of the accuracy table."""


@dataclass
class Tally:
    """Counts of one detector setting over the edits."""

    found: int = 0
    right: int = 0
    changes: int = 0
    cuts_after_fast: int = 0
    found_after_fast: int = 0
    false_at_flashes: int = 0

    def add(self, edit: SyntheticEdit, cuts: list[int]) -> None:
        matched: set[int] = set()
        for change in edit.transitions:
            low, high = change.start - 1, change.start + 1 if change.kind == "cut" else change.stop
            hit = next((c for c in cuts if low <= c <= high and c not in matched), None)
            if hit is not None:
                matched.add(hit)
            if change.kind == "cut" and change.after_fast:
                self.cuts_after_fast += 1
                self.found_after_fast += hit is not None
        self.found += len(cuts)
        self.right += len(matched)
        self.changes += len(edit.transitions)
        self.false_at_flashes += sum(any(a - 1 <= c <= b + 1 for a, b in edit.flashes) for c in cuts if c not in matched)

    def row(self, label: str) -> str:
        precision, recall = self.right / max(self.found, 1), self.right / max(self.changes, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        return (f"| {label} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {self.found_after_fast}/{self.cuts_after_fast} "
                f"| {self.found - self.right} ({self.false_at_flashes} at flashes) |")


def decoded_edits(count: int, width: int, height: int, folder: Path) -> list[tuple[SyntheticEdit, list]]:
    """The benchmark edits, each encoded to H.264 and decoded again (as a run reads them)."""
    edits = []
    for k, edit in enumerate(benchmark_edits(count, width, height)):
        clip = encode_frames(folder / f"edit{k}.mp4", edit.frames, fps=24)
        edits.append((edit, [view.array() for view in open_input(str(clip)).views()]))
    return edits


def accuracy_table(count: int, width: int, height: int) -> list[str]:
    """Markdown rows: precision, recall, F1, hard cuts found after fast shots, false cuts."""
    with tempfile.TemporaryDirectory(prefix="rdengine-shots-") as tmp:
        edits = decoded_edits(count, width, height, Path(tmp))
    changes = sum(len(edit.transitions) for edit, _ in edits)
    lines = [f"{count} edits at {width}x{height}, 24 fps: {sum(len(f) for _, f in edits)} frames, {changes} shot changes "
             f"({sum(t.kind == 'fade' for e, _ in edits for t in e.transitions)} fades), "
             f"{sum(len(e.flashes) for e, _ in edits)} flashes", "",
             "| detector | precision | recall | F1 | hard cuts after fast shots | false cuts |",
             "|---|---|---|---|---|---|"]
    for method, threshold, flash in SETTINGS:
        tally = Tally()
        for edit, frames in edits:
            detector = CutDetector(method, threshold, fps=24.0, flash_frames=flash)
            for i, frame in enumerate(frames):
                detector.feed(i, frame)
            tally.add(edit, detector.cuts())
        default = (method, threshold, flash) == (DEFAULT_METHOD, DEFAULT_THRESHOLDS[DEFAULT_METHOD], FLASH_FRAMES)
        lines.append(tally.row(f"{method} {threshold:g}{', flash check' if flash else ''}"
                               f"{' (default)' if default else ''}"))
    return lines


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


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench shots", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x432", help="synthetic clip WxH, processed at its own size")
    parser.add_argument("--frames", type=positive, default=240, help="clip length")
    parser.add_argument("--pairs", type=positive, default=5, help="runs of each, alternating")
    parser.add_argument("--accuracy", action="store_true", help="precision and recall on synthetic edits instead")
    parser.add_argument("--edits", type=positive, default=24, help="synthetic edits of the accuracy table")
    args = parser.parse_args(argv)
    if args.accuracy:
        width, height = (int(v) for v in (args.size if args.size != parser.get_default("size") else "192x108")
                         .lower().split("x"))
        print("\n".join(accuracy_table(args.edits, width, height)))
        return
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

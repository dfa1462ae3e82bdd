"""Cut detection overhead: seconds per frame of ``CutDetector.feed`` (downscale, BGR, PySceneDetect).

    python -m rdengine.benchmarks.shots_overhead [--sizes 128x96 768x432] [--frames 300]

Frames are synthetic (moving shapes, a cut every 50 frames), made before timing starts, so
only the detector's own work is measured: what shot detection adds to ingest per frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..engine.shots import CutDetector
from ..engine.testing.synthetic_clip import synthetic_edit


def time_detector(method: str, frames: np.ndarray, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per frame of feeding ``frames`` to a fresh detector."""
    best = float("inf")
    for _ in range(repeats):
        det = CutDetector(method, fps=25.0)
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            det.feed(i, frame)
        det.cuts()
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["128x96", "768x432"])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"{'size':>10} {'method':>9} {'ms/frame':>9}")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        shots = [50] * max(1, args.frames // 50)
        frames, _ = synthetic_edit(shots, w, h, seed=0)
        for method in CutDetector.METHODS:
            print(f"{size:>10} {method:>9} {1e3 * time_detector(method, frames):9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

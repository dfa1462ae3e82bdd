"""Against the authors' own output: `rdengine process --reproduce` on their tiny checkpoint.

``tests/fidelity/`` holds a random-weight checkpoint in the real layout, two clips and the
``depth_pred`` the published RollingDepth code computed from them on CPU in float32
(generator seeded with 0, ``restore_res=False``; see ``tests/fidelity/README.md``). The
comparison allows one affine fit: ``mean|s*a + t - b| / mean|b - mean(b)| < 1%``.

The published co-alignment (Adam, 2000 steps) is itself only defined to about 1e-3: a
relative change of 1e-7 in its input moves the scales by ~1e-3, so no implementation can
match it more closely than that on outputs without refinement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.testing.processes import run_rdengine

FIXTURES = Path(__file__).parent / "fidelity"
CASES = {  # clip, their output, the preset and processing resolution of their call
    "clip60-paper": ("clip60.mp4", "clip60_paper_res128_seed0.npy", "paper", 128),
    "small40-fast": ("small40.mp4", "small40_fast_res64_seed0.npy", "fast", 64),
}


def relative_error_after_affine(ours: np.ndarray, theirs: np.ndarray) -> float:
    a, b = ours.astype(np.float64).ravel(), theirs.astype(np.float64).ravel()
    (s, t), *_ = np.linalg.lstsq(np.stack([a, np.ones_like(a)], 1), b, rcond=None)
    return float(np.mean(np.abs(s * a + t - b)) / np.mean(np.abs(b - b.mean())))


def process(clip: str, preset: str, res: int, out: Path, *extra: str) -> np.ndarray:
    proc = run_rdengine("process", FIXTURES / clip, "-o", out, "--checkpoint", FIXTURES / "tiny-ckpt",
                        "--preset", preset, "--res", str(res), "--seed", "0", "--device", "cpu",
                        "--save", "npy", "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    return np.load(out / f"{Path(clip).stem}_depth.npy")


@pytest.mark.parametrize("case", list(CASES))
def test_reproduce_matches_the_authors_output(case, tmp_path):
    clip, expected, preset, res = CASES[case]
    theirs = np.load(FIXTURES / expected)
    ours = process(clip, preset, res, tmp_path, "--reproduce")
    assert ours.shape == theirs.shape  # clip60: 85x128 processing size, their 80x128 output
    assert relative_error_after_affine(ours, theirs) < 0.01


def test_default_mode_covers_the_whole_frame(tmp_path):
    """Without --reproduce the 85-row processing size gives 85 rows of depth, not 80."""
    clip, _, preset, res = CASES["clip60-paper"]
    ours = process(clip, preset, res, tmp_path, "--frames", "12", "--refine-steps", "2")
    assert ours.shape == (12, 85, 128)

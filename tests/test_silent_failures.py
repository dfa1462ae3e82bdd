"""Never hang, never fill a gap with zeros: Python warnings during a run (issue 28, class 2) and
data that the records call done but that is gone from the store (class 3), with real runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import write_clip

ENGINE = ("--res", "64", "--dtype", "fp32", "--device", "cpu", "--dilations", "1", "4", "--batch-size", "4",
          "--shots", "none", "--unit-frames", "8", "--log-format", "plain")

NOISY_DEPENDENCY = """
import sys, warnings
import zarr

write = zarr.Array.__setitem__

def noisy_write(self, selection, value):  # as a new zarr release that deprecates something would
    warnings.warn("Array.__setitem__ will change in zarr 4", FutureWarning, stacklevel=2)
    warnings.warn("selection keyword is deprecated", DeprecationWarning, stacklevel=2)
    return write(self, selection, value)

zarr.Array.__setitem__ = noisy_write
from rdengine.cli import main
main(sys.argv[1:])
"""


def process(*args, ckpt, timeout=180, env=None) -> subprocess.CompletedProcess:
    return run_rdengine("process", *map(str, args), "--checkpoint", str(ckpt), *ENGINE, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def clip24(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=24, width=64, height=48)


# ------------------------------------------------------------------ class 2: warnings never hang


@pytest.mark.parametrize("filters", [None, "always"])
def test_a_dependency_warning_during_a_run_is_one_line_and_never_hangs(clip24, tiny_checkpoint, tmp_path, filters):
    """Every shard write warns twice; the run ends as usual with each shown warning as one line
    (Python's filters decide which: without ``PYTHONWARNINGS`` the library's deprecation is hidden)."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | ({"PYTHONWARNINGS": filters} if filters else {})
    proc = subprocess.run([sys.executable, "-c", NOISY_DEPENDENCY, "process", str(clip24), "-o", str(out),
                           "--checkpoint", str(tiny_checkpoint), *ENGINE, "--save", "npy"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(out / "clip_depth.npy").shape == (24, 48, 64)
    lines = proc.stderr.splitlines()
    future = [line for line in lines if "zarr 4" in line]
    assert future == ["warning: Array.__setitem__ will change in zarr 4 (FutureWarning)"], proc.stderr[-3000:]
    deprecated = [line for line in lines if "selection keyword" in line]
    expected = ["warning: selection keyword is deprecated (DeprecationWarning)"] if filters == "always" else []
    assert deprecated == expected, proc.stderr[-3000:]
    assert not [line for line in lines if "Warning:" in line or line.startswith("  warnings.warn")], proc.stderr


def test_an_input_warning_is_one_line_at_the_command_line(tiny_checkpoint, tmp_path):
    """A numbering gap and NaN pixels in EXR plates: one ``warning:`` line each, never Python's raw form."""
    plates = tmp_path / "plates"
    plates.mkdir()
    for number in (1, 2, 3, 5, 6, 7):
        rgb = np.full((32, 48, 3), 0.1 * (number % 5), np.float32)
        rgb[3, 4] = np.nan
        with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                          {"RGB": rgb}) as exr:
            exr.write(str(plates / f"plate_{number:04d}.exr"))
    proc = process(plates, "-o", tmp_path / "out", "--save", "npy", ckpt=tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.isfinite(np.load(tmp_path / "out" / "plates_depth.npy")).all()
    gaps = [line for line in proc.stderr.splitlines() if "gap" in line or "missing" in line]
    assert len(gaps) == 1 and gaps[0].startswith("warning: "), proc.stderr
    assert "Warning:" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------ class 3: missing data is damage


@pytest.fixture(scope="module")
def finished(clip24, tiny_checkpoint, tmp_path_factory) -> tuple[Path, bytes]:
    """A finished run (intermediates released) and the bytes of its depth."""
    out = tmp_path_factory.mktemp("finished") / "out"
    proc = process(clip24, "-o", out, "--save", "npy", ckpt=tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr
    return out, (out / "clip_depth.npy").read_bytes()


@pytest.mark.parametrize("loss", ["one shard", "whole array"])
def test_lost_final_depth_is_recomputed_never_exported_as_zeros(finished, clip24, tiny_checkpoint, tmp_path, loss):
    """A rerun that adds an export finds the lost depth, recomputes it and writes the same depth."""
    first, expected = finished
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    depth = out / "run.zarr" / "depth"
    if loss == "one shard":
        (depth / "c" / "1" / "0" / "0").unlink()  # rows 8..15 (8 frames a shard)
    else:
        shutil.rmtree(depth)
    np.save(tmp_path / "gt.npy", np.random.default_rng(0).uniform(1.0, 10.0, (24, 48, 64)).astype(np.float32))
    scored = run_rdengine("eval", out, tmp_path / "gt.npy")  # never scores zeros for the lost rows
    assert scored.returncode == 2 and "Traceback" not in scored.stderr, scored.stderr
    assert scored.stderr.strip().splitlines()[-1].startswith(f"error: {out / 'run.zarr'}: damaged run store (array "
                                                             "depth"), scored.stderr
    proc = process(clip24, "-o", out, "--save", "npy", "--save", "exr", ckpt=tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]
    damage = [line for line in proc.stderr.splitlines() if line.startswith("warning: damaged data")]
    reason = "rows 8..15: shard file" if loss == "one shard" else "the array is missing"
    assert len(damage) == 1 and reason in damage[0] and "recomputed" in damage[0], proc.stderr
    assert (out / "clip_depth.npy").read_bytes() == expected
    depth_values = np.load(out / "clip_depth.npy")
    for frame in (0, 8, 15, 23):
        with OpenEXR.File(str(out / "exr" / f"clip_{frame:06d}.exr")) as exr:
            np.testing.assert_array_equal(exr.parts[0].channels["Z"].pixels, depth_values[frame])
    assert run_rdengine("inspect", out, "--verify").returncode == 0

"""Outputs never touch a file the run did not write: input frames inside output folders, an
output folder that is the input's, outputs a pattern or glob would read back, and files of the
user in the output folder are refused before any work (one line naming both paths, exit 2),
and a rerun removes only files a run there wrote. Real image files, real runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.errors import EngineError
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.image_files import write_exr, write_image
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import synthetic_frames

W, H = 32, 24


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a digest of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def png_plates(folder: Path, name: str, count: int = 6, digits: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, rgb in enumerate(synthetic_frames(count, W, H, seed=2)):
        write_image(folder / f"{name}_{n:0{digits}d}.png", rgb, "png", "rgb24", "rgb24")
    return folder


def run(source, out: Path, ckpt: Path, *save: str, overwrite: bool = False, **config):
    cfg = resolve_config("fast", res=W, dtype="fp32", checkpoint=str(ckpt), dilations=(1,), **config)
    opts = ExecutionOptions(device="cpu", batch_size=8, save=save, progress="quiet", overwrite=overwrite)
    return process_video(str(source), out, cfg, opts)


def refused(proc, *needles: str) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("fmt,make", [
    ("exr", lambda out: [write_exr(out / "exr" / f"clip_{n:06d}.exr", {"RGB": np.full((H, W, 3), n / 8, np.float32)})
                         for n in range(6)] and "exr/clip_%06d.exr"),
    ("png16", lambda out: png_plates(out / "png16", "png16") and "png16"),
])
def test_input_frames_in_a_per_frame_output_folder_are_refused_and_untouched(tmp_path, tiny_checkpoint, fmt, make):
    out = tmp_path / "out"
    (out / fmt).mkdir(parents=True)
    source = out / make(out)  # the frames' own names are those the output would write
    before = fingerprint(out)
    proc = run_rdengine("process", source, "-o", out, "--checkpoint", tiny_checkpoint, "--device", "cpu",
                        "--res", "32", "--save", fmt)
    refused(proc, str(out / fmt), "the input file")
    assert fingerprint(out) == before  # nothing overwritten, deleted or added (no run store either)


def test_the_sequence_folder_as_output_folder_is_refused(tmp_path, tiny_checkpoint):
    plates = png_plates(tmp_path / "plates", "plate", digits=4)
    before = fingerprint(plates)
    with pytest.raises(EngineError, match=f"output folder {plates} holds the input's frames "
                                          f"\\({plates}/plate_0000.png\\)"):
        run(plates, plates, tiny_checkpoint, "npy", shots="none")
    assert fingerprint(plates) == before


def test_outputs_a_glob_would_read_back_are_refused(tmp_path, tiny_checkpoint):
    shots = tmp_path / "shots"
    png_plates(shots / "a", "f", digits=4)
    spec = f"{shots}/*/*.png"
    with pytest.raises(EngineError, match="would be read as a frame of the input"):
        run(spec, shots / "depth", tiny_checkpoint, "npy")  # its contact sheet shots/depth/NAME_shots.png matches
    assert not (shots / "depth").exists()
    result = run(spec, shots / "depth", tiny_checkpoint, "npy", shots="none")  # no picture among the outputs
    assert result.num_frames == 6


def test_a_file_no_run_wrote_is_never_replaced(tmp_path, clip, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "clip_depth.mp4"
    theirs.write_bytes(b"an edit the user made")
    proc = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, "--device", "cpu",
                        "--res", "32", "--frames", "4")
    refused(proc, str(theirs), "was not written by rdengine")
    assert fingerprint(out) == {"clip_depth.mp4": hashlib.sha256(b"an edit the user made").hexdigest()}
    frames = out / "exr"
    frames.mkdir()
    theirs.unlink()
    (frames / "clip_000002.exr").write_bytes(b"a plate")  # the shape of a per-frame output: refused too
    with pytest.raises(EngineError, match="exr/clip_000002.exr exists and was not written by rdengine"):
        run(clip, out, tiny_checkpoint, "exr", frames=4)
    assert (frames / "clip_000002.exr").read_bytes() == b"a plate" and not (out / "run.zarr").exists()


def test_a_rerun_removes_only_the_files_runs_there_wrote(tmp_path, clip, tiny_checkpoint):
    out = tmp_path / "out"
    run(clip, out, tiny_checkpoint, "exr", "png16", frames=6, shots="none")
    (out / "exr" / "notes.txt").write_text("mine")
    (out / "exr" / "other_000004.exr").write_bytes(b"another plate")
    run(clip, out, tiny_checkpoint, "exr", "png16", frames=3, shots="none", overwrite=True)  # a shorter clip
    assert sorted(p.name for p in (out / "exr").iterdir()) == \
        ["clip_000000.exr", "clip_000001.exr", "clip_000002.exr", "notes.txt", "other_000004.exr"]
    assert sorted(p.name for p in (out / "png16").iterdir()) == \
        ["clip_000000.png", "clip_000001.png", "clip_000002.png", "scale.json"]
    assert (out / "exr" / "notes.txt").read_text() == "mine"

"""Errors that came late, misled or crashed (issue 28): each case with real files, the exact line
said and nothing started or lost."""

from __future__ import annotations

import errno

import av
import numpy as np
import pytest
from PIL import Image

from rdengine.engine.errors import write_remedy
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import synthetic_frames, write_clip
from rdengine.storage.inputs import InputError, InputWarning, open_input
from rdengine.storage.run_store import RunStore

ENGINE = ("--res", "32", "--dtype", "fp32", "--device", "cpu", "--dilations", "1", "--batch-size", "4",
          "--save", "npy", "--quiet")


def last_error(proc) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_a_cut_list_typo_is_said_before_any_work_and_the_corrected_command_runs(tmp_path, clip, tiny_checkpoint):
    cuts, out = tmp_path / "cuts.txt", tmp_path / "out"
    cuts.write_text("10\n2O\n")  # a letter O for a zero
    typo = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, "--shots", cuts, *ENGINE)
    assert last_error(typo) == (f"error: {cuts}:2: bad cut: '2O' is not a frame number, HH:MM:SS:FF, "
                                "HH:MM:SS.mmm or seconds value")
    assert not out.exists()  # nothing was started
    cuts.write_text("10\n20\n")
    fixed = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, "--shots", cuts, *ENGINE)
    assert fixed.returncode == 0, fixed.stderr
    assert RunStore(out / "run.zarr").info["cuts"] == [10, 20]


def test_a_file_as_output_folder_says_so_and_advises_no_free_space(tmp_path, clip, tiny_checkpoint):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    line = last_error(run_rdengine("process", clip, "-o", taken, "--checkpoint", tiny_checkpoint, *ENGINE))
    assert line.startswith(f"error: cannot write to run store {taken / 'run.zarr'}: File exists")
    assert line.endswith("a file stands where a folder must be: choose another -o (or move the file)")
    assert taken.read_text() == "not a folder"
    assert write_remedy(OSError(errno.ENOSPC, "full")).endswith("free space and rerun the same command to continue")
    assert write_remedy(OSError(errno.EROFS, "ro")).startswith("make the output folder writable")
    assert "free space" not in write_remedy(OSError(errno.EACCES, "denied"))


def test_a_float32_tiff_sequence_with_nan_pixels_is_read_not_called_damaged(tmp_path, tiny_checkpoint):
    plates = tmp_path / "plates"
    plates.mkdir()
    for number, frame in enumerate(synthetic_frames(6, 48, 32), start=1):
        grey = frame.mean(axis=2).astype(np.float32) / 255
        grey[0, :3] = np.nan
        Image.fromarray(grey, mode="F").save(plates / f"plate_{number:03d}.tif")
    source = open_input(str(plates))
    assert "(float 48x32)" in source.info.description
    first = next(source.frames())
    assert first.dtype == np.float32 and first.shape == (32, 48, 3) and np.isfinite(first).all()
    np.testing.assert_allclose(first[5, 7], np.asarray(Image.open(plates / "plate_001.tif"))[5, 7])
    proc = run_rdengine("process", plates, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, *ENGINE)
    assert proc.returncode == 0, proc.stderr
    assert np.isfinite(np.load(tmp_path / "out" / "plates_depth.npy")).all()
    (plates / "plate_004.tif").write_bytes((plates / "plate_004.tif").read_bytes()[:200])  # now truly damaged
    with pytest.raises(InputError, match="plate_004.tif is damaged or not an image"):
        list(open_input(str(plates)).frames())


def test_a_capture_that_starts_mid_gop_is_said_so_not_called_truncated(tmp_path):
    whole = write_clip(tmp_path / "whole.mp4", frames=48, width=64, height=48, options={"g": "12", "bf": "0"})
    cut = tmp_path / "capture.mp4"
    with av.open(str(whole)) as source, av.open(str(cut), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for k, packet in enumerate(p for p in source.demux(video=0) if p.dts is not None):
            if k >= 5:  # the capture began at the 6th frame, 7 frames before the next keyframe (12)
                packet.stream = stream
                target.mux(packet)
    video = open_input(str(cut))
    assert sum(1 for _ in video.frames()) == 36
    assert video.report.problems() == ["the stream starts 7 frame(s) before its first keyframe (a capture or cut "
                                       "that begins mid-GOP): those frames cannot be decoded and are skipped"]
    clean = open_input(str(whole))
    assert sum(1 for _ in clean.frames()) == 48 and clean.report.problems() == []


def test_a_sequence_hint_names_a_pattern_that_matches(tmp_path):
    for name in ("a_1.png", "a_2.png", "a_10.png", "b_001.png", "b_002.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(InputError) as raised:
        open_input(str(tmp_path))
    hint = str(raised.value).rsplit("give a pattern such as ", 1)[1]
    assert hint == str(tmp_path / "a_%d.png")
    with pytest.warns(InputWarning, match="frames 3-9 missing"):
        assert len(open_input(hint).info.frame_numbers) == 3
    assert len(open_input(str(tmp_path / "b_%03d.png")).info.frame_numbers) == 2


def test_inspect_a_store_missing_info_keys_and_bench_of_zero_frames(tmp_path):
    store = RunStore.create_or_resume(tmp_path / "run.zarr", {"engine": "0", "config": {}})
    store.update_info(num_frames=5, plan={"batch_size": 2}, cuts=[2], expected_units={"merge": 2})
    proc = run_rdengine("inspect", tmp_path, "--verify")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "frames      5 at ?, depth ? (?), latents ?" in proc.stdout
    bench = run_rdengine("bench", "--frames", "0")
    assert bench.returncode == 2 and "'--frames': 0 is not in the range x>=1" in bench.stderr, bench.stderr

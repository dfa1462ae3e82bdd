"""The stream that holds the video, frame numbers and real time, and depth aligned with the
picture as displayed: a poster on the default track, cut lists in a sequence's own numbers,
duplicate frame numbers, variable-frame-rate video, non-square pixels, the --reproduce size
rule with --restore-res, and point-cloud intrinsics. Real files made here, real runs."""

from __future__ import annotations

import io
import json
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import xarray
from av.stream import Disposition

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.errors import EngineError
from rdengine.engine.latents import Geometry, display_frame
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.image_files import write_image
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import synthetic_edit, synthetic_frames
from rdengine.storage.inputs import ArrayView, InputError, open_input
from rdengine.storage.inputs import video as video_input

W, H = 32, 24


def frame(rgb: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def run(source, out: Path, ckpt: Path, *save: str, log: io.StringIO | None = None, restore_res: bool = False,
        res: int = W, **config):
    cfg = resolve_config("fast", res=res, dtype="fp32", checkpoint=str(ckpt), dilations=(1,), **config)
    opts = ExecutionOptions(device="cpu", batch_size=8, save=save, progress="plain" if log else "quiet",
                            restore_res=restore_res)
    return process_video(str(source), out, cfg, opts, progress_stream=log)


# ---------------------------------------------------------------- which stream


def poster_then_video(path: Path, fmt: str | None = None) -> Path:
    """A one-picture h264 poster as the first, default track; the 10-frame video second, not default."""
    with av.open(str(path), "w", format=fmt) as c:
        poster = c.add_stream("libx264", rate=12)
        video = c.add_stream("libx264", rate=12)
        for s in (poster, video):
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        poster.disposition, video.disposition = Disposition.default, Disposition(0)
        c.mux(poster.encode(frame(np.zeros((H, W, 3), np.uint8))) + poster.encode())
        for rgb in synthetic_frames(10, W, H, seed=4):
            c.mux(video.encode(frame(rgb)))
        c.mux(video.encode())
    return path


@pytest.mark.parametrize("name,fmt", [("poster.mp4", None), ("poster.mkv", None), ("poster.ts", "mpegts")])
def test_a_poster_on_the_default_track_never_beats_the_video(tmp_path, monkeypatch, name, fmt):
    path = poster_then_video(tmp_path / name, fmt)
    source = open_input(str(path))  # (a matroska poster track carries the file's duration: its header says 10)
    assert source.info.stream == 1 and len(list(source.frames())) == 10
    assert source.info.choice.startswith(f"{path}: reading video stream #1 (h264 32x24")
    assert "#0 (h264 32x24, ~1 frame)" in source.info.choice and "holds fewer frames" in source.info.choice
    monkeypatch.setattr(video_input, "PROBE_PACKETS", 6)  # a long file: only its first packets are counted
    long = open_input(str(path))
    assert long.info.stream == 1 and "#0 is a single picture" in long.info.choice


def test_the_chosen_stream_is_said_and_naming_it_resumes_the_run(tmp_path, tiny_checkpoint):
    path = poster_then_video(tmp_path / "poster.mp4")
    out, log = tmp_path / "out", io.StringIO()
    assert run(path, out, tiny_checkpoint, "npy", log=log, shots="none").num_frames == 10
    assert f"note: {path}: reading video stream #1 (h264 32x24, ~10 frames) of 2" in log.getvalue()
    again = run(path, out, tiny_checkpoint, "npy", shots="none", stream=1)  # the stream in use: the same run
    assert {s["name"]: s["computed"] for s in again.stages}["snippets"] == 0  # resumed, nothing recomputed
    with pytest.raises(EngineError, match="different"):
        run(path, out, tiny_checkpoint, "npy", shots="none", stream=0)


# ---------------------------------------------------------------- frame numbers and cut lists


def png_sequence(folder: Path, frames: np.ndarray, first: int, digits: int = 4) -> Path:
    folder.mkdir()
    for k, rgb in enumerate(frames):
        write_image(folder / f"plate_{first + k:0{digits}d}.png", rgb, "png", "rgb24", "rgb24")
    return folder


def test_a_cut_list_of_a_sequence_is_read_in_its_own_frame_numbers(tmp_path, tiny_checkpoint):
    frames, cuts = synthetic_edit((6, 6, 6), W, H, seed=3)
    plates = png_sequence(tmp_path / "plates", frames, 1001)
    cut_list = tmp_path / "cuts.txt"
    cut_list.write_text("1007\n1013\n5\n")  # the editor's plate numbers, and one that is no frame of the plates
    out, log = tmp_path / "out", io.StringIO()
    run(plates, out, tiny_checkpoint, "npy", log=log, shots=str(cut_list))
    shots = json.loads((out / "plates_shots.json").read_text())
    assert shots["cuts"] == cuts == [6, 12]
    assert [(s["first_frame_number"], s["last_frame_number"]) for s in shots["shots"]] == \
        [(1001, 1006), (1007, 1012), (1013, 1018)]
    warning = next(line for line in log.getvalue().splitlines() if line.startswith("warning:"))
    assert f"1 of 3 cuts in {cut_list} fall outside the processed frames 1001-1018" in warning
    assert "cuts.txt:3: frame 5" in warning and "integers are the input's own frame numbers" in warning


def test_two_files_of_one_frame_number_are_refused_naming_both(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("frame_1.png", "frame_2.png", "frame_3.png", "frame_003.png"):
        write_image(folder / name, np.zeros((8, 8, 3), np.uint8), "png", "rgb24", "rgb24")
    with pytest.raises(InputError) as error:
        open_input(str(folder))
    assert str(error.value) == (f"{folder}/: {folder / 'frame_003.png'} and {folder / 'frame_3.png'} both carry "
                                "frame number 3: keep one, or give the pattern of one (frame_%03d.png or "
                                "frame_%d.png)")
    assert len(list(open_input(str(folder / "frame_%d.png")).frames())) == 3  # as the message says


# ---------------------------------------------------------------- variable frame rate


VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 0.4, 1.4, 1.5, 1.6, 2.6, 2.7, 2.8, 2.9, 3.9, 4.0, 4.1]  # seconds


def vfr_video(path: Path) -> Path:
    """An H.264 mp4 whose frames carry the time stamps ``VFR_TIMES`` (held frames: a screen capture)."""
    frames, _ = synthetic_edit((5, 5, 5), W, H, seed=7)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for rgb, t in zip(frames, VFR_TIMES):
            picture = frame(rgb)
            picture.pts, picture.time_base = round(t * 1000), Fraction(1, 1000)
            c.mux(stream.encode(picture))
        c.mux(stream.encode())
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(video=0)]


def test_variable_frame_rate_keeps_real_times_in_store_shots_and_output_videos(tmp_path, tiny_checkpoint):
    video = vfr_video(tmp_path / "capture.mp4")
    assert frame_times(video) == pytest.approx(VFR_TIMES)
    cut_list = tmp_path / "cuts.csv"
    cut_list.write_text("start time (seconds)\n1.4\n2.6\n")  # seconds of the source: frames 5 and 8
    out = tmp_path / "out"
    run(video, out, tiny_checkpoint, "mp4", "sbs", "gray16", shots=str(cut_list))
    store = xarray.open_zarr(out / "run.zarr", consolidated=False)
    np.testing.assert_allclose(store["time"].values, VFR_TIMES, atol=1e-6)
    shots = json.loads((out / "capture_shots.json").read_text())
    assert shots["cuts"] == [5, 8]
    assert [(s["start_seconds"], s["end_seconds"]) for s in shots["shots"][:2]] == [(0.0, 1.4), (1.4, 2.6)]
    for name in ("capture_depth.mp4", "capture_sbs.mp4", "capture_depth16.mkv"):  # 4.1 s stays 4.1 s
        assert frame_times(out / name) == pytest.approx(VFR_TIMES, abs=1e-3), name
    assert json.loads((out / "capture_depth.json").read_text())["times"]["variable_rate"] is True


# ---------------------------------------------------------------- geometry


def test_non_square_pixels_are_processed_and_exported_as_displayed(tmp_path, tiny_checkpoint):
    stored = np.zeros((H, 16, 3), np.uint8)  # 16 stored columns of 2:1 pixels show as 32 square ones
    stored[:, :8] = (255, 0, 0)
    stored[:, 8:] = (0, 0, 255)
    path = tmp_path / "anamorphic.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 16, H, "yuv444p"
        stream.codec_context.sample_aspect_ratio = Fraction(2, 1)
        for _ in range(6):
            c.mux(stream.encode(frame(stored)))
        c.mux(stream.encode())
    source = open_input(str(path))
    assert (source.info.width, source.info.height) == (32, H) and "pixel aspect 2" in source.info.description
    shown = next(source.frames())
    assert shown.shape == (H, 32, 3)
    assert shown[:, :15, 0].min() > 200 and shown[:, 17:, 2].min() > 200  # the edge at the middle, as displayed
    out = tmp_path / "out"
    run(path, out, tiny_checkpoint, "npy", "sbs", restore_res=True, shots="none")
    assert np.load(out / "anamorphic_depth.npy").shape == (6, H, 32)
    with av.open(str(out / "anamorphic_sbs.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (64, H)


def test_reproduce_restore_res_keeps_the_authors_crop_aligned(tmp_path, tiny_checkpoint):
    assert Geometry((45, 64), "authors").covered((50, 70)) == (44, 70)  # depth 40x64 of the resized 45x64
    assert Geometry((45, 64), "pad").covered((50, 70)) == (50, 70)
    video = tmp_path / "odd.mp4"
    with av.open(str(video), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 36, 20, "yuv444p"
        for rgb in synthetic_frames(6, 36, 20, seed=1):
            c.mux(stream.encode(frame(rgb)))
        c.mux(stream.encode())
    out = tmp_path / "out"
    run(video, out, tiny_checkpoint, "npy", "sbs", restore_res=True, res=0, reproduce=True, coalign="reference")
    depth = xarray.open_zarr(out / "run.zarr", consolidated=False)["depth"].values
    restored = np.load(out / "odd_depth.npy")
    assert depth.shape == restored.shape == (6, 16, 32)  # the top-left 16x32 the authors' rule covers: not stretched
    np.testing.assert_array_equal(restored, depth)
    assert json.loads((out / "odd_depth.json").read_text())["covers"]["rows"] == 16
    with av.open(str(out / "odd_sbs.mp4")) as c:  # the picture beside depth is the same crop, not the whole frame
        left = next(c.decode(video=0)).to_ndarray(format="rgb24")[:16, :32].astype(int)
    first = open_input(str(video)).frames().__next__()
    crop_error = np.abs(left - first[:16, :32]).mean()
    squeezed_error = np.abs(left - display_frame(ArrayView(first), (16, 32))).mean()
    assert crop_error < 0.6 * squeezed_error, (crop_error, squeezed_error)


@pytest.mark.parametrize("focal", ["inf", "nan", "-3", "0"])
def test_focal_length_must_be_finite_and_positive(tmp_path, clip, focal):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--save", "ply", "--focal", focal)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"^error: --focal must be (> 0|a finite number|a number), not", proc.stderr, re.M), proc.stderr

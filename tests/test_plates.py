"""Plates as editors expect them: outputs carry the input's frame numbers (with --start and
--stride too), per-frame names follow a template padded like the input's, and the source
timecode reaches the sidecar and every EXR header. Real encoded clips, real EXR sequences,
real runs with the tiny checkpoint."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest
import xarray

from rdengine.engine.clip import select_clip
from rdengine.engine.config import ConfigError, ExecutionOptions, resolve_config
from rdengine.engine.options import option
from rdengine.engine.errors import EngineError
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.image_files import write_exr
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import synthetic_frames
from rdengine.storage.inputs import InputWarning, open_input
from rdengine.storage.timecode import Timecode, frame_to_smpte, smpte_to_frame

W, H, FPS = 32, 24, 12


def encode(path: Path, frames: np.ndarray, fps: int = FPS, timecode: str | None = None) -> Path:
    """H.264 mp4 of ``frames``, the ``timecode`` tag on its video stream when given."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = *frames.shape[1:3], "yuv420p"
        if timecode:
            stream.metadata["timecode"] = timecode
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def exr_plates(folder: Path, first: int, count: int, timecode: tuple[int, int, int, int] | None = None) -> Path:
    """EXR files ``shot_NNNN.exr`` numbered from ``first`` (4 digits), ``timeCode`` headers counting up."""
    folder.mkdir(parents=True)
    linear = (synthetic_frames(count, W, H, seed=5) / 255.0).astype(np.float32) ** 2.2
    for k, rgb in enumerate(linear):
        header = {}
        if timecode:
            code = OpenEXR.TimeCode()
            code.hours, code.minutes, code.seconds = timecode[:3]
            code.frame = timecode[3] + k
            header["timeCode"] = code
        write_exr(folder / f"shot_{first + k:04d}.exr", {"RGB": np.ascontiguousarray(rgb)}, **header)
    return folder


def run(source, out: Path, ckpt: Path, *save: str, frame_name: str | None = None, **config):
    cfg = resolve_config("fast", res=W, dtype="fp32", checkpoint=str(ckpt), dilations=(1,), shots="none", **config)
    opts = ExecutionOptions(device="cpu", batch_size=8, save=save, progress="quiet", frame_name=frame_name)
    return process_video(str(source), out, cfg, opts)


def exr_header(path: Path) -> dict:
    with OpenEXR.File(str(path), header_only=True) as f:
        return dict(f.parts[0].header)


def label(code) -> str:
    return f"{code.hours:02d}:{code.minutes:02d}:{code.seconds:02d}{';' if code.dropFrame else ':'}{code.frame:02d}"


def test_video_start_and_stride_keep_the_frame_numbers_and_timecode(tmp_path, tiny_checkpoint):
    video = encode(tmp_path / "take.mp4", synthetic_frames(20, W, H, seed=1), timecode="01:00:00:00")
    out = tmp_path / "out"
    result = run(video, out, tiny_checkpoint, "exr", "npz", "mp4", start=3, stride=2, frames=5)
    assert result.num_frames == 5
    numbers = [3, 5, 7, 9, 11]
    assert sorted(p.name for p in (out / "exr").iterdir()) == [f"take_{n:06d}.exr" for n in numbers]
    for n in numbers:  # each EXR: its frame number and the source's timecode of that frame
        header = exr_header(out / "exr" / f"take_{n:06d}.exr")
        assert header["rdengine:frame"] == n and label(header["timeCode"]) == f"01:00:00:{n:02d}"
        assert header["framesPerSecond"] == Fraction(6)
    with np.load(out / "take_depth.npz") as z:
        assert z["frames"].tolist() == numbers and float(z["fps"]) == 6.0
    doc = json.loads((out / "take_depth.json").read_text())
    assert doc["frame_numbers"] == {"first": 3, "step": 2, "count": 5} and doc["fps"] == 6.0
    assert doc["timecode"]["first_frame"] == "01:00:00:03" and doc["frame_name"] == "{name}_{frame:06d}"
    store = xarray.open_zarr(out / "run.zarr", consolidated=False)
    assert store["frame"].values.tolist() == numbers
    np.testing.assert_allclose(store["time"].values, np.array(numbers) / FPS)  # seconds in the source
    with av.open(str(out / "take_depth.mp4")) as c:  # plays at the source rate / stride
        stream = c.streams.video[0]
        assert stream.average_rate == 6 and len([f for f in c.decode(stream)]) == 5
    manifest = json.loads((out / "run.zarr" / "zarr.json").read_text())["attributes"]["manifest"]
    assert manifest["clip"] == {"stream": 0, "first": 3, "stride": 2, "frames": 5}


def test_image_sequence_keeps_its_numbers_padding_and_exr_timecode(tmp_path, tiny_checkpoint):
    plates = exr_plates(tmp_path / "plates", 1001, 8, timecode=(10, 0, 0, 0))
    source = open_input(str(plates / "shot_%04d.exr"))
    assert source.info.number_digits == 4 and source.info.timecode == Timecode("10:00:00:00", 24.0, 1001)
    out = tmp_path / "out"
    run(plates / "shot_%04d.exr", out, tiny_checkpoint, "exr", "png16", start=1003, stride=2)
    numbers = [1003, 1005, 1007]
    assert sorted(p.name for p in (out / "exr").iterdir()) == [f"shot_{n}.exr" for n in numbers]  # 4 digits, as in
    assert sorted(p.name for p in (out / "png16").glob("*.png")) == [f"shot_{n}.png" for n in numbers]
    assert [label(exr_header(out / "exr" / f"shot_{n}.exr")["timeCode"]) for n in numbers] == \
        ["10:00:00:02", "10:00:00:04", "10:00:00:06"]
    doc = json.loads((out / "shot_depth.json").read_text())
    assert doc["frame_numbers"] == {"first": 1003, "step": 2, "count": 3} and doc["fps"] == 12.0
    assert doc["timecode"]["first_frame"] == "10:00:00:02"

    renamed = tmp_path / "renamed"  # an editor's template; the same frames
    run(plates, renamed, tiny_checkpoint, "exr", start=1003, stride=2, frame_name="{name}.{frame:05d}")
    assert sorted(p.name for p in (renamed / "exr").iterdir()) == [f"plates.{n:05d}.exr" for n in numbers]
    assert json.loads((renamed / "plates_depth.json").read_text())["frame_name"] == "{name}.{frame:05d}"
    for n in numbers:
        a = OpenEXR.File(str(out / "exr" / f"shot_{n}.exr")).channels()["Z"].pixels
        b = OpenEXR.File(str(renamed / "exr" / f"plates.{n:05d}.exr")).channels()["Z"].pixels
        np.testing.assert_array_equal(a, b)


def test_a_new_template_replaces_the_files_of_the_old_one(tmp_path, clip, tiny_checkpoint):
    out = tmp_path / "out"
    run(clip, out, tiny_checkpoint, "exr", frames=4)
    assert sorted(p.name for p in (out / "exr").iterdir()) == [f"clip_{n:06d}.exr" for n in range(4)]
    run(clip, out, tiny_checkpoint, "exr", frames=4, frame_name="{name}.{frame:04d}")  # resumes: only exr redone
    assert sorted(p.name for p in (out / "exr").iterdir()) == [f"clip.{n:04d}.exr" for n in range(4)]


def test_unpadded_input_names_give_unpadded_output_names(tmp_path):
    plates = tmp_path / "frames"
    plates.mkdir()
    for n in (8, 9, 10):
        write_exr(plates / f"f{n}.exr", {"RGB": np.zeros((4, 4, 3), np.float32)})
    assert open_input(str(plates)).info.number_digits == 1


@pytest.mark.parametrize("template,words", [
    ("{name}", "must hold {frame}"),
    ("{name}_{frame:04d}_{take}", "fields can be {name} and {frame} only"),
    ("{frame!r}", "fields can be {name} and {frame} only"),
    ("sub/{frame:04d}", "must make a file name"),
    (".{frame}", "must make a file name"),
    ("{frame:04x", "frame file name template"),
    ("{frame:.0e}", "gives frames the same name"),
])
def test_bad_name_templates_are_refused_before_work(template, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        option("name").parse(template)


def test_start_of_an_image_sequence_is_its_frame_number(tmp_path):
    plates = tmp_path / "plates"
    plates.mkdir()
    for n in (1001, 1002, 1003, 1006, 1007):
        write_exr(plates / f"shot_{n}.exr", {"RGB": np.zeros((4, 4, 3), np.float32)})
    with pytest.warns(InputWarning, match="frames 1004-1005 missing"):
        info = open_input(str(plates)).info
    clip, notes = select_clip(info, resolve_config(start=1004, stride=1))
    assert clip.first == 3 and notes == [f"{plates} has no frame 1004: starting at frame 1006"]
    with pytest.raises(EngineError, match=re.escape("--start 5 is before the first frame (1001)")):
        select_clip(info, resolve_config(start=5))
    with pytest.raises(EngineError, match=re.escape("--start 2000 is past the last frame (1007)")):
        select_clip(info, resolve_config(start=2000))
    clip, notes = select_clip(info, resolve_config(target_fps=10))
    assert clip.step == 2 and clip.fps == 12
    assert notes == ["--target-fps 10: every 2nd frame of the 24 fps input (12 fps)"]


def test_stride_and_target_fps_options_on_the_command_line(tmp_path, clip, tiny_checkpoint):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--device", "cpu",
                        "--res", "32", "--dilations", "1", "--shots", "none", "--target-fps", "4",
                        "--max-frames", "3", "--save", "npz", "--log-format", "plain")
    assert proc.returncode == 0, proc.stderr
    assert "note: --target-fps 4: every 3rd frame of the 12 fps input (4 fps)" in proc.stderr
    with np.load(tmp_path / "out" / "clip_depth.npz") as z:
        assert z["frames"].tolist() == [0, 3, 6] and float(z["fps"]) == 4.0
    bad = run_rdengine("process", clip, "-o", tmp_path / "x", "--stride", "2", "--target-fps", "4")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "give --stride or --target-fps, not both" in bad.stderr


def test_timecode_labels_round_trip():
    for fps, drop in [(24, False), (25, False), (30000 / 1001, True), (60000 / 1001, True), (24000 / 1001, False)]:
        for frames in (0, 1, 1799, 1800, 17981, 17982, 107892, 2073599):
            label_ = frame_to_smpte(frames, fps, drop)
            assert smpte_to_frame(label_, fps) == frames, (fps, frames, label_)
    assert frame_to_smpte(1800, 30000 / 1001, True) == "00:01:00;02"  # labels ;00 and ;01 are skipped
    assert Timecode("23:59:59:23", 24).at(1) == "00:00:00:00"  # wraps at 24 hours
    assert Timecode("01:00:00:00", 25, number=1001).at(1026) == "01:00:01:00"

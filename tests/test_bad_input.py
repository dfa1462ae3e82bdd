"""Odd and broken inputs: a clear one-line error (non-zero exit, no traceback, nothing claimed
complete) or a documented graceful behaviour (short videos, odd sizes, rotation, pixel formats,
variable frame rate, truncated files)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from rdengine.cli import cli
from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.model import load_model
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.synthetic_clip import synthetic_frames
from rdengine.storage.inputs import open_input
from rdengine.storage.run_store import read_summary
from rdengine.engine.testing.processes import run_rdengine


def encode(path: Path, frames: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p", src: str = "rgb24",
           rotation: int = 0, pts_ms: list[int] | None = None) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=12)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=src)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cli_error(*args) -> str:
    """Run the CLI in-process; assert one ``error:`` line, exit 2, no exception escaping."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(str(tiny_checkpoint), "cpu", "fp32", "sdpa")


def process(video: Path, out: Path, model, ckpt, res: int = 32, **overrides):
    cfg = resolve_config("full", res=res, dtype="fp32", checkpoint=str(ckpt), dilations=overrides.pop("dilations", (1, 4)),
                         refine_steps=overrides.pop("refine_steps", 2), **overrides)
    opts = ExecutionOptions(device="cpu", batch_size=8, save=("npy",), progress="quiet", restore_res=True)
    result = process_video(str(video), out, cfg, opts, model=model)
    depth = np.load(result.outputs["npy"])
    assert np.isfinite(depth).all()
    assert read_summary(str(out / "run.zarr")).complete
    return result, depth


def assert_nothing_complete(out: Path) -> None:
    summary = read_summary(str(out / "run.zarr"))
    assert summary is None or not summary.complete
    assert not list(out.glob("*.npy")) if out.exists() else True


# --- inputs that must fail cleanly -------------------------------------------------------------

def test_missing_path_directory_and_zero_byte(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    assert "not found" in cli_error("process", tmp_path / "nope.mp4", "-o", out, "--checkpoint", tiny_checkpoint)
    assert "directory" in cli_error("process", tmp_path, "-o", out, "--checkpoint", tiny_checkpoint)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert "empty" in cli_error("process", empty, "-o", out, "--checkpoint", tiny_checkpoint)
    assert_nothing_complete(out)


def test_text_file_named_mp4_and_audio_only(tmp_path, tiny_checkpoint):
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 100)
    assert str(text) in cli_error("process", text, "-o", tmp_path / "o1", "--checkpoint", tiny_checkpoint)
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "no video stream" in cli_error("process", audio, "-o", tmp_path / "o2", "--checkpoint", tiny_checkpoint)
    assert_nothing_complete(tmp_path / "o2")


def test_truncated_mp4_is_a_clear_error_in_a_real_process(tmp_path, tiny_checkpoint):
    """An mp4 written by PyAV keeps its index (moov) at the end: cut, nothing decodes."""
    whole = encode(tmp_path / "whole.mp4", synthetic_frames(30, 64, 48))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    proc = run_rdengine("process", cut, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(cut) in errors[0], proc.stderr
    assert_nothing_complete(tmp_path / "out")


# --- inputs that must work ----------------------------------------------------------------------

def test_truncated_mkv_keeps_decodable_frames_with_a_warning(tmp_path, model, tiny_checkpoint, capsys):
    whole = encode(tmp_path / "whole.mkv", synthetic_frames(30, 64, 48))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    result, depth = process(cut, tmp_path / "out", model, tiny_checkpoint)
    assert 3 <= depth.shape[0] < 30
    assert "warning:" in capsys.readouterr().err


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_very_short_videos(frames, tmp_path, model, tiny_checkpoint, capsys):
    video = encode(tmp_path / "short.mp4", synthetic_frames(frames, 64, 48))
    cfg = dict(dilations=(1, 10, 25))
    result, depth = process(video, tmp_path / "out", model, tiny_checkpoint, **cfg)
    assert depth.shape == (frames, 48, 64)


@pytest.mark.parametrize("size", [(37, 101), (50, 2000)])
def test_odd_sizes_and_extreme_aspect_ratios(size, tmp_path, model, tiny_checkpoint):
    h, w = size
    video = encode(tmp_path / "odd.mp4", synthetic_frames(5, w, h), pix_fmt="yuv444p")
    result, depth = process(video, tmp_path / "out", model, tiny_checkpoint, res=64)
    assert depth.shape == (5, h, w)  # --restore-res: back to the input size


def test_rotated_video_is_processed_upright(tmp_path, model, tiny_checkpoint):
    frames = synthetic_frames(5, 64, 48)
    video = encode(tmp_path / "rot.mp4", frames, rotation=90)
    with av.open(str(video)) as container:
        first = next(container.decode(video=0))
        assert first.rotation == 90
    source = open_input(str(video))
    assert (source.info.height, source.info.width) == (64, 48)
    upright = next(source.frames())
    assert np.abs(upright.astype(int) - np.rot90(frames[0]).astype(int)).mean() < 8
    result, depth = process(video, tmp_path / "out", model, tiny_checkpoint, res=64)
    assert depth.shape == (5, 64, 48)


@pytest.mark.parametrize("codec,pix_fmt,suffix,src", [
    ("libx264", "yuv420p10le", ".mp4", "rgb24"),
    ("libx264", "yuv444p", ".mp4", "rgb24"),
    ("ffv1", "gray", ".mkv", "rgb24"),
    ("png", "rgba", ".mov", "rgba"),
])
def test_pixel_formats(codec, pix_fmt, suffix, src, tmp_path, model, tiny_checkpoint):
    frames = synthetic_frames(4, 64, 48)
    if src == "rgba":
        frames = np.concatenate([frames, np.full((*frames.shape[:3], 1), 128, np.uint8)], axis=-1)
    video = encode(tmp_path / f"v{suffix}", frames, codec=codec, pix_fmt=pix_fmt, src=src)
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == pix_fmt
    result, depth = process(video, tmp_path / "out", model, tiny_checkpoint)
    assert depth.shape == (4, 48, 64)


def test_variable_frame_rate(tmp_path, model, tiny_checkpoint):
    pts = [0, 40, 50, 200, 210, 400, 420, 700]
    video = encode(tmp_path / "vfr.mkv", synthetic_frames(len(pts), 64, 48), pts_ms=pts)
    with av.open(str(video)) as container:
        got = [f.pts for f in container.decode(video=0)]
    assert len(set(np.diff(got))) > 1  # really irregular
    result, depth = process(video, tmp_path / "out", model, tiny_checkpoint)
    assert depth.shape[0] == len(pts)  # every decoded frame, none dropped or duplicated

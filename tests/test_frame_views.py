"""Frames read a band of rows at a time (``FrameView``): the same values as whole frames for
the pixel formats a video decodes to, and the same results from the consumers that read
bands (resize to the processing size, cut detection, contact-sheet thumbnails)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from rdengine.engine import latents
from rdengine.engine.latents import resize, resize_frame
from rdengine.engine.shots.contact_sheet import thumbnail
from rdengine.engine.shots.detector import CutDetector
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_edit
from rdengine.storage.inputs import ArrayView, open_input, to_uint8
from rdengine.storage.inputs import video
from rdengine.storage.inputs.video import frame_to_rgb, rgb_format

SIZES = [(64, 48), (66, 50), (65, 49)]  # (width, height): even, even with odd chroma rows, odd
FORMATS = ["yuv420p", "yuvj420p", "yuva420p", "nv12", "yuv420p10le", "yuv422p", "yuv422p10le", "yuv444p",
           "yuyv422", "gbrp", "gbrp10le", "rgb24", "bgr0", "rgba", "gray", "gray16le", "rgb48le", "gbrpf32le"]


def random_rgb(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``uint8 [n, h, w, 3]`` noise over a horizontal ramp (every row and chroma sample differs)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, w)[None, None, :, None]
    return np.clip(ramp + rng.normal(0, 60, (n, h, w, 3)), 0, 255).astype(np.uint8)


def write_raw(path: Path, pix_fmt: str, width: int, height: int, frames: int = 2) -> Path:
    """Uncompressed ``pix_fmt`` frames in a NUT file: decoding gives frames of exactly that format."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=24)
        stream.pix_fmt, stream.width, stream.height = pix_fmt, width, height
        for rgb in random_rgb(frames, height, width):
            source = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            for packet in stream.encode(source):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def whole_frames(path: Path) -> list[np.ndarray]:
    """Each frame converted whole, as the published method reads them (``to_ndarray``)."""
    with av.open(str(path)) as container:
        return [frame_to_rgb(f, rgb_format(f)) for f in container.decode(video=0)]


@pytest.mark.parametrize("pix_fmt", FORMATS)
def test_bands_of_every_format_and_size_are_the_whole_frame(pix_fmt, tmp_path, monkeypatch):
    monkeypatch.setattr(video, "WHOLE_MAX_VALUES", 0)  # band by band even for these small frames
    for width, height in SIZES:
        path = write_raw(tmp_path / f"{pix_fmt}_{width}x{height}.nut", pix_fmt, width, height)
        expected = whole_frames(path)
        views = list(open_input(str(path)).views())
        assert len(views) == len(expected) == 2
        for view, whole in zip(views, expected):
            assert view.shape == whole.shape and view.dtype == whole.dtype
            for step in (2, 5, 16):  # odd steps start bands on odd rows
                bands = [view.rows(a, min(a + step, height)) for a in range(0, height, step)]
                np.testing.assert_array_equal(np.concatenate(bands), whole, err_msg=f"{pix_fmt} {width}x{height}")
            np.testing.assert_array_equal(view.array(), whole)


@pytest.mark.parametrize("pix_fmt, size, banded", [
    ("yuv420p", (64, 48), True), ("yuv420p", (66, 50), True), ("yuv422p", (64, 48), True),
    ("yuv444p", (64, 48), True), ("gbrp10le", (64, 48), True), ("gray16le", (64, 48), True),
    ("yuyv422", (64, 48), False), ("yuv422p10le", (64, 48), False), ("yuv420p", (65, 49), False),
    ("nv12", (64, 48), False), ("yuv420p10le", (64, 48), False)])
def test_which_frames_convert_in_bands(pix_fmt, size, banded, tmp_path, monkeypatch):
    """8-bit yuv420p/yuv422p (H.264's usual output) and formats without chroma subsampling
    convert in bands; the others go through swscale's filtering path, which follows a chroma
    siting PyAV does not let us copy, so they are converted whole."""
    monkeypatch.setattr(video, "WHOLE_MAX_VALUES", 0)
    view = next(open_input(str(write_raw(tmp_path / "f.nut", pix_fmt, *size))).views())
    assert view.banded is banded


def test_bands_of_h264_decoder_frames(tmp_path, monkeypatch):
    """Frames straight from FFmpeg's H.264 decoder (padded lines, its own buffers), 4:2:0 and 4:2:2."""
    monkeypatch.setattr(video, "WHOLE_MAX_VALUES", 0)
    for pix_fmt in ("yuv420p", "yuv422p"):
        path = encode_frames(tmp_path / f"{pix_fmt}.mp4", random_rgb(3, 90, 160), fps=24, pix_fmt=pix_fmt)
        for view, whole in zip(open_input(str(path)).views(), whole_frames(path), strict=True):
            assert view.banded
            bands = [view.rows(a, min(a + 8, 90)) for a in range(0, 90, 8)]
            np.testing.assert_array_equal(np.concatenate(bands), whole)


def test_small_frames_convert_whole_once(tmp_path):
    view = next(open_input(str(write_raw(tmp_path / "f.nut", "yuv420p", 64, 48))).views())
    assert not view.banded and view.whole is None
    first = view.rows(0, 10)
    assert view.whole is not None and np.shares_memory(first, view.whole)


def test_resize_in_strips_of_decoded_bands_is_the_whole_resize(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "WHOLE_MAX_VALUES", 0)
    monkeypatch.setattr(latents, "STRIP_VALUES", 3000)  # strips of 14 rows at 64 px wide
    for pix_fmt in ("yuv420p", "yuv422p10le"):
        path = write_raw(tmp_path / f"{pix_fmt}.nut", pix_fmt, 64, 48)
        for view, whole in zip(open_input(str(path)).views(), whole_frames(path)):
            expected = resize(torch.from_numpy(whole).permute(2, 0, 1)[None].float(), (20, 27))[0]
            assert torch.equal(resize_frame(view, (20, 27)), expected)


@pytest.mark.parametrize("width, height, most_read", [(512, 288, 1.0), (600, 340, 1.0), (1000, 562, 1.0),
                                                      (300, 1000, 1.0), (200, 100, 1.0), (2400, 1350, 0.5)])
def test_cut_detection_reads_only_sampled_rows_and_sees_the_same_thumbnail(width, height, most_read):
    """The detector's thumbnail of a view (only the rows OpenCV's bilinear downscale reads are
    read, into an otherwise untouched canvas) is OpenCV's thumbnail of the whole frame, for
    downscales by exactly 2 (OpenCV's area path), by other factors, and none; a large
    downscale reads a fraction of the rows (at 8K, 4 rows in 30)."""
    frame = random_rgb(1, height, width)[0]
    read: list[tuple[int, int]] = []

    class Recording(ArrayView):
        def rows(self, start: int, stop: int) -> np.ndarray:
            read.append((start, stop))
            return super().rows(start, stop)

    whole, banded = CutDetector(), CutDetector()
    np.testing.assert_array_equal(banded._prepare(Recording(frame)), whole._prepare(frame))
    rows = sum(stop - start for start, stop in read)
    assert rows <= most_read * height


def test_views_and_arrays_give_the_same_cuts_and_thumbnails(tmp_path):
    frames, cuts = synthetic_edit([20, 16, 24], 640, 360)
    path = encode_frames(tmp_path / "edit.mp4", frames, fps=24)
    source = open_input(str(path))
    by_view, by_array = CutDetector(fps=24), CutDetector(fps=24)
    for index, (view, array) in enumerate(zip(source.views(), whole_frames(path))):
        by_view.feed(index, view)
        by_array.feed(index, array)
        if index == 30:
            np.testing.assert_array_equal(thumbnail(view), thumbnail(array))
    assert by_view.cuts() == by_array.cuts() == cuts


def test_deep_frames_are_rounded_to_eight_bits_for_detection(tmp_path):
    path = write_raw(tmp_path / "deep.nut", "rgb48le", 600, 340)
    view = next(open_input(str(path)).views())
    assert view.dtype == np.uint16
    np.testing.assert_array_equal(CutDetector()._prepare(view), CutDetector()._prepare(to_uint8(view.array())))


def test_image_sequences_give_array_views(tmp_path):
    from PIL import Image

    for k, rgb in enumerate(random_rgb(3, 20, 30)):
        Image.fromarray(rgb).save(tmp_path / f"f{k:03d}.png")
    source = open_input(str(tmp_path))
    for view, array in zip(source.views(1), source.frames(1)):
        assert isinstance(view, ArrayView)
        np.testing.assert_array_equal(view.rows(3, 9), array[3:9])

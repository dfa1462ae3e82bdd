"""The inputs room on real files made here: PyAV encodes the videos, Pillow/PyAV/OpenEXR write the
images, byte edits damage them. Each test asserts the exact outcome."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rdengine.engine.testing.image_files import write_exr, write_image
from rdengine.storage.inputs import InputError, InputWarning, open_input, to_unit_float

OpenEXR = pytest.importorskip("OpenEXR")


# --- writers ---------------------------------------------------------------------------------------

def synth(n: int, h: int, w: int) -> np.ndarray:
    """``uint8 [n, h, w, 3]`` smooth moving gradients (compress well, every frame distinct)."""
    y, x = np.mgrid[:h, :w]
    return np.stack([np.stack([(x * 4 + i * 3) % 256, (y * 4 + i * 5) % 256, ((x + y) * 2 + i * 7) % 256], -1)
                     for i in range(n)]).astype(np.uint8)


def encode(path: Path, frames: np.ndarray, fmt: str | None = None, gop: int = 12, pix_fmt: str = "yuv420p",
           rotation: int = 0) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.gop_size, stream.options = pix_fmt, gop, {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(video=0) if p.size]


def remux(src: Path, dst: Path, skip_last: bool = False) -> Path:
    """Copy the video packets of ``src`` into ``dst`` (another container), optionally without the last one."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        kept = [p for p in inp.demux(video=0) if p.size]
        for packet in kept[:-1] if skip_last else kept:
            packet.stream = stream
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """48 frames of 96x64 H.264 in mp4, a keyframe every 12 frames."""
    return encode(tmp_path_factory.mktemp("inputs") / "clip.mp4", synth(48, 64, 96))


# --- videos ----------------------------------------------------------------------------------------

def test_decoding_continues_past_a_damaged_packet(clip, tmp_path):
    clean = list(open_input(str(clip)).frames())
    assert len(clean) == 48
    data = bytearray(clip.read_bytes())
    payload = data.index(b"mdat") + 4  # PyAV writes the index (moov) after the media data
    middle = payload + sum(p.size for p in packets(clip)) // 2
    data[middle:middle + 300] = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))

    source = open_input(str(damaged))
    frames = list(source.frames())
    report = source.report
    assert 40 <= len(frames) <= 48 and report.decoded == len(frames)
    assert report.dropped + report.concealed > 0 or any("frames decode" in p for p in report.problems())
    assert report.problems() and report.reached_end
    np.testing.assert_array_equal(frames[-1], clean[-1])  # the last GOP decodes exactly: decoding went on


@pytest.mark.parametrize("suffix,fmt,audio_codec,picture", [(".m4a", "mp4", "aac", "png"),
                                                            (".mp3", "mp3", "libmp3lame", "png")])
def test_audio_with_cover_art_only_is_an_error(suffix, fmt, audio_codec, picture, tmp_path):
    if audio_codec not in av.codecs_available:
        pytest.skip(f"no {audio_codec} encoder in this FFmpeg")
    path = tmp_path / f"song{suffix}"
    with av.open(str(path), "w", format=fmt) as container:
        audio = container.add_stream(audio_codec, rate=44100)
        cover = container.add_stream(picture, rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 48, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in cover.encode(av.VideoFrame.from_ndarray(synth(1, 48, 64)[0], format="rgb24")) + cover.encode():
            container.mux(packet)
        for i in range(10):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 44100, i * 1152
            for packet in audio.encode(samples):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    with pytest.raises(InputError, match=re.escape(f"no video stream in {path} (only cover art)") + "$"):
        open_input(str(path))


def test_still_image_stream_first_is_skipped_and_stream_forces_one(tmp_path):
    path = tmp_path / "poster_then_video.mkv"
    with av.open(str(path), "w") as container:
        still = container.add_stream("mjpeg", rate=1)
        still.width, still.height, still.pix_fmt = 64, 48, "yuvj420p"
        video = container.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        poster = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24").reformat(format="yuvj420p")
        for packet in still.encode(poster) + still.encode():
            container.mux(packet)
        for rgb in synth(10, 48, 64):
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)

    source = open_input(str(path))
    assert source.info.choice == (f"{path}: reading video stream #1 (h264 64x48, ~10 frames) of 2; #0 is a still "
                                  "image (--stream N picks another)")
    assert source.info.description == "video stream #1: h264 64x48, 12 fps, ~10 frames"
    assert source.info.frames_estimate == 10 and len(list(source.frames())) == 10

    forced = open_input(str(path), stream=0)
    assert forced.info.choice.endswith("reading video stream #0 (mjpeg 64x48, ~1 frame, a still image) (--stream 0)")
    assert forced.info.frames_estimate == 1 and len(list(forced.frames())) == 1
    assert open_input(str(path), stream=1).info.frames_estimate == 10
    with pytest.raises(InputError) as bad:
        open_input(str(path), stream=2)
    assert str(bad.value) == (f"no video stream #2 in {path}; its video streams: #0 (mjpeg 64x48, ~1 frame, "
                              f"a still image), #1 (h264 64x48, ~10 frames)")


def test_resolution_change_mid_stream_keeps_each_frame_size(tmp_path):
    small = encode(tmp_path / "a.ts", synth(10, 48, 64), fmt="mpegts")
    large = encode(tmp_path / "b.ts", synth(10, 64, 96), fmt="mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(small.read_bytes() + large.read_bytes())

    source = open_input(str(joined))
    shapes = [f.shape for f in source.frames()]
    assert shapes == [(48, 64, 3)] * 10 + [(64, 96, 3)] * 10
    assert source.report.size_changes == [(10, (64, 96))]
    assert source.report.problems() == ["frame size changes mid-stream (frame 10: 96x64)"]
    assert [f.shape for f in source.frames(start=9, count=2)] == [(48, 64, 3), (64, 96, 3)]


def test_identity_follows_the_packets_not_the_container(clip, tmp_path):
    source = open_input(str(clip))
    assert source.identity() == open_input(str(clip)).identity()
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(clip.read_bytes())
    assert open_input(str(copy)).identity() == source.identity()

    demuxed = packets(clip)
    middle = demuxed[len(demuxed) // 2 + 3]  # a P frame: one flipped bit still decodes
    data = bytearray(clip.read_bytes())
    data[middle.pos + middle.size // 2] ^= 0x10
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(bytes(data))
    assert len(list(open_input(str(edited)).frames())) == 48
    assert open_input(str(edited)).identity() != source.identity()

    assert open_input(str(remux(clip, tmp_path / "remux.mkv"))).identity() == source.identity()
    assert open_input(str(remux(clip, tmp_path / "short.mkv", skip_last=True))).identity() != source.identity()


def test_frames_is_a_generator_with_start_and_count(clip):
    source = open_input(str(clip))
    every = source.frames()
    assert inspect.isgenerator(every)
    first = next(every)
    assert isinstance(first, np.ndarray) and first.shape == (64, 96, 3) and first.dtype == np.uint8
    every.close()
    whole = list(source.frames())
    np.testing.assert_array_equal(np.stack(list(source.frames(5, 3))), np.stack(whole[5:8]))
    assert source.report.decoded == 3 and source.report.frames_read == 8 and not source.report.reached_end
    assert len(list(source.frames(40))) == 8 and source.report.reached_end and source.report.problems() == []
    assert list(source.frames(60)) == [] and list(source.frames(0, 0)) == []
    with pytest.raises(ValueError):
        list(source.frames(-1))


def test_rotation_and_ten_bit_video(tmp_path):
    rotated = open_input(str(encode(tmp_path / "rot.mp4", synth(3, 48, 64), rotation=90)))
    assert (rotated.info.height, rotated.info.width) == (64, 48)
    assert next(rotated.frames()).shape == (64, 48, 3)
    deep = open_input(str(encode(tmp_path / "10bit.mp4", synth(3, 48, 64), pix_fmt="yuv420p10le")))
    frame = next(deep.frames())
    assert frame.dtype == np.uint16 and frame.shape == (48, 64, 3)
    assert np.abs(to_unit_float(frame) * 255 - synth(3, 48, 64)[0]).mean() < 4


def test_video_errors_name_the_file(clip, tmp_path):
    missing = tmp_path / "nope.mp4"
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the index (moov) is at the end: lost
    for path, words in [(missing, "input not found"), (empty, "empty (zero-byte) file"),
                        (text, "not a media file"), (cut, "cut before its index")]:
        with pytest.raises(InputError, match=re.escape(words)) as error:
            open_input(str(path))
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    from rdengine.storage.inputs import VideoSource

    with pytest.raises(InputError, match=re.escape(f"input is a directory, not a video file: {tmp_path}")):
        VideoSource(str(tmp_path))
    picture = tmp_path / "still.jpg"
    Image.fromarray(synth(1, 8, 8)[0]).save(picture)
    with pytest.raises(InputError, match=re.escape(f"no video stream in {picture} (only a still image; stream=0 reads "
                                                   "it anyway)")):
        open_input(str(picture))
    assert len(list(open_input(str(picture), stream=0).frames())) == 1


# --- image sequences -------------------------------------------------------------------------------

def test_sixteen_bit_png_folder(tmp_path):
    plates = tmp_path / "plates16"
    plates.mkdir()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 65536, (6, 8, 3), dtype=np.uint16) for _ in range(3)]
    for number, frame in zip((1001, 1002, 1003), frames):
        write_image(plates / f"plate_{number}.png", frame, "png", "rgb48le", "rgb48be")
    source = open_input(str(plates))
    assert source.info.kind == "images" and source.info.frame_numbers == (1001, 1002, 1003)
    assert (source.info.width, source.info.height, source.info.frames_estimate, source.info.fps) == (8, 6, 3, 24.0)
    assert source.info.description == (f"image sequence {plates}/: 3 png files, frames 1001-1003 (16-bit 8x6), "
                                       f"24 fps (default: set fps to change)")
    got = list(source.frames())
    assert all(f.dtype == np.uint16 for f in got)
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(frames[0][..., 0]).save(grey / "g_01.png")  # single channel, 16 bits
    frame = next(open_input(str(grey)).frames())
    assert frame.dtype == np.uint16 and (frame == frames[0][..., :1]).all()


def test_exr_is_linear_float_shown_as_srgb(tmp_path):
    linear = np.array([0.18, 0.002, 2.0], np.float32)  # mid grey, the linear toe, above white
    for number in (1, 2):
        write_exr(tmp_path / f"shot_{number:04d}.exr", {"RGB": np.broadcast_to(linear, (4, 5, 3)).copy()})
    source = open_input(str(tmp_path / "shot_%04d.exr"), fps=25)
    assert source.info.frame_numbers == (1, 2) and source.info.fps == 25.0
    assert "float scene-linear, shown as sRGB" in source.info.description
    frames = list(source.frames())
    assert len(frames) == 2 and frames[0].dtype == np.float32 and frames[0].shape == (4, 5, 3)
    np.testing.assert_allclose(frames[0][0, 0], [0.4613561, 0.02584, 1.0], atol=1e-5)

    (tmp_path / "grey").mkdir()
    grey = write_exr(tmp_path / "grey" / "depth_0001.exr", {"Y": np.full((4, 5), 0.18, np.float16)})
    np.testing.assert_allclose(next(open_input(str(grey.parent)).frames()), 0.46135, atol=1e-3)
    (tmp_path / "crop").mkdir()  # data window (1, 1)-(3, 2) inside display window (0, 0)-(4, 3)
    window = write_exr(tmp_path / "crop" / "crop_0001.exr", {"RGB": np.ones((2, 3, 3), np.float32)},
                       dataWindow=(np.array([1, 1], np.int32), np.array([3, 2], np.int32)),
                       displayWindow=(np.array([0, 0], np.int32), np.array([4, 3], np.int32)))
    framed = next(open_input(str(window.parent)).frames())
    assert framed.shape == (4, 5, 3)
    assert framed[1:3, 1:4].min() == 1.0 and framed.sum() == 2 * 3 * 3


def test_eight_bit_jpg_glob_tiff_hashes_and_dpx(tmp_path):
    frames = synth(3, 24, 32)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"cam_{i + 7}.jpg", quality=95)
        Image.fromarray(frame).save(tmp_path / f"scan.{i + 10:04d}.tif")
        write_image(tmp_path / f"film_{i:03d}.dpx", frames[i].astype(np.uint16) * 257, "dpx", "rgb48le", "gbrp10le")
    jpg = open_input(str(tmp_path / "cam_*.jpg"))
    assert jpg.info.frame_numbers == (7, 8, 9) and jpg.info.path == str(tmp_path / "cam_*.jpg")
    got = list(jpg.frames())
    assert all(f.dtype == np.uint8 for f in got)
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(got, frames)) < 3
    tif = open_input(str(tmp_path / "scan.####.tif"))
    assert tif.info.frame_numbers == (10, 11, 12)
    for a, b in zip(tif.frames(), frames):
        np.testing.assert_array_equal(a, b)
    dpx = open_input(str(tmp_path / "film_%03d.dpx"))
    film = list(dpx.frames())
    assert film[0].dtype == np.uint16 and np.abs(to_unit_float(film[2]) * 255 - frames[2]).max() < 0.6


def test_natural_order_and_gap_warnings(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for number in (10, 2, 1):
        Image.fromarray(np.full((4, 4, 3), number, np.uint8)).save(folder / f"frame{number}.png")
    with pytest.warns(InputWarning) as caught:
        source = open_input(str(folder))
    assert [str(w.message) for w in caught] == [f"{folder}/: frames 3-9 missing (numbering gap)"]
    assert source.info.frame_numbers == (1, 2, 10)
    assert [int(f[0, 0, 0]) for f in source.frames()] == [1, 2, 10]

    plates = tmp_path / "plates"
    plates.mkdir()
    for number in (1001, 1002, 1003, 1004, 1008, 1009, 1011):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(plates / f"p.{number}.png")
    with pytest.warns(InputWarning) as caught:
        open_input(str(plates) + "/")
    assert [str(w.message) for w in caught] == [f"{plates}/: frames 1005-1007, 1010 missing (numbering gaps)"]
    with pytest.warns(InputWarning, match="1005-1007, 1010 missing"):
        pattern = open_input(str(plates / "p.%04d.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned when opened, not again while reading
        assert len(list(pattern.frames(1, 2))) == 2


def test_mixed_sizes_and_unreadable_frames_name_the_file(tmp_path):
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    for number, (h, w) in enumerate([(8, 8), (8, 8), (8, 10), (6, 6)]):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(sizes / f"s_{number}.png")
    source = open_input(str(sizes))
    frames = source.frames()
    assert next(frames).shape == next(frames).shape == (8, 8, 3)
    with pytest.raises(InputError) as error:
        next(frames)
    assert str(error.value) == (f"{sizes / 's_2.png'} is 10x8, but {sizes}/ starts at 8x8 (s_0.png): "
                                "frames of mixed sizes")

    for suffix in (".png", ".jpg"):
        broken = tmp_path / f"broken{suffix}"
        broken.mkdir()
        for number in range(3):
            Image.fromarray(synth(1, 32, 32)[0]).save(broken / f"b_{number}{suffix}")
        whole = (broken / f"b_1{suffix}").read_bytes()
        (broken / f"b_1{suffix}").write_bytes(whole[: len(whole) // 2])
        frames = open_input(str(broken)).frames()
        next(frames)
        with pytest.raises(InputError, match=re.escape(f"cannot read frame 1 of {broken}/: {broken / ('b_1' + suffix)} "
                                                       "is damaged or not an image")):
            next(frames)


def test_sequence_errors(tmp_path):
    with pytest.raises(InputError, match="no image files"):
        open_input(str(tmp_path))
    (tmp_path / "a_1.png").write_bytes(b"")
    (tmp_path / "a_2.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=re.escape(f"{tmp_path}/ mixes image types (.jpg, .png)")):
        open_input(str(tmp_path))
    (tmp_path / "a_2.jpg").rename(tmp_path / "b_1.png")
    several = f"holds 2 sequences (a_#.png, b_#.png): give a pattern such as {tmp_path}/a_%d.png"  # one that matches
    with pytest.raises(InputError, match=re.escape(several)):
        open_input(str(tmp_path))
    with pytest.raises(InputError, match="no image files"):
        open_input(str(tmp_path / "c_%04d.png"))
    with pytest.raises(InputError, match="stream=1 applies to video files"):
        open_input(str(tmp_path / "*.png"), stream=1)


def test_image_identity_and_start_count(tmp_path):
    frames = synth(5, 8, 8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"f_{i:02d}.png")
    source = open_input(str(tmp_path))
    assert inspect.isgenerator(source.frames())
    got = list(source.frames(1, 3))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, frames[1:4]))
    assert (source.report.decoded, source.report.reached_end) == (3, False)
    assert len(list(source.frames(3))) == 2 and source.report.reached_end
    before = source.identity()
    assert open_input(str(tmp_path)).identity() == before
    (tmp_path / "f_02.png").write_bytes((tmp_path / "f_02.png").read_bytes() + b"\0")
    assert open_input(str(tmp_path)).identity() != before
    (tmp_path / "f_04.png").unlink()
    assert open_input(str(tmp_path)).identity() != before


def test_to_unit_float():
    for frame in (np.array([[[0, 255, 51]]], np.uint8), np.array([[[0, 65535, 13107]]], np.uint16)):
        unit = to_unit_float(frame)
        assert unit.dtype == np.float32
        np.testing.assert_allclose(unit, [[[0, 1, 0.2]]], rtol=1e-6)
    floats = np.full((1, 1, 3), 0.25, np.float32)
    assert to_unit_float(floats) is floats

"""Video files through PyAV: stream choice, decoding past damage, content identity.

Frames come out RGB in display orientation (the display-matrix rotation is applied),
alpha dropped: ``uint8 [H, W, 3]`` for 8-bit streams, ``uint16 [H, W, 3]`` (``rgb48le``,
full 0-65535 range) for streams of more than 8 bits per channel, ``float32`` for float
streams. Each frame keeps its own decoded size, so a resolution change mid-stream shows
as frames of another shape (recorded in ``DecodeReport.size_changes``).

Memory follows the frame size in two places, both bounded here where it can be:
``DecodedFrame`` converts a decoded frame to RGB a band of rows at a time where that gives
the bytes of converting it whole (``converts_in_bands``: 8-bit video and formats without
chroma subsampling; others are converted whole), and frames above
``FRAME_THREADS_MAX_PIXELS`` decode with slice threads only (FFmpeg's frame threads each
hold a frame in flight; a stream of one slice per frame, x264's default, then decodes on
one thread). What remains is the codec's own: a long-GOP stream's reference and
reordering frames.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.stream import Disposition
from av.video.reformatter import VideoReformatter

from ...errors import InputError
from .source import DecodeReport, FrameSource, FrameView, SourceInfo, check_range

# Codecs whose streams of one frame (or an unknown count) are pictures (posters, thumbnails), not the video.
STILL_CODECS = frozenset({"mjpeg", "png", "bmp", "webp", "tiff"})
DEFAULT_FPS = Fraction(25)  # when the container announces no rate at all
FRAME_THREADS_MAX_PIXELS = 3840 * 2160  # larger frames: slice threads only (no extra frames in flight)
WHOLE_MAX_VALUES = 1 << 22  # frames of up to this many RGB values convert whole, once; larger ones band by band
# 8-bit chroma-subsampled formats that swscale converts to rgb24 with its direct converter
# (at even sizes; two rows at a time for 4:2:0), which ignores chroma siting: bands of even
# rows convert to the same bytes. Formats without chroma subsampling convert row by row.
# Other subsampled formats (10-bit 4:2:0 or 4:2:2, nv12) go through swscale's filtering
# path, which follows the frame's chroma siting: PyAV does not expose it, so they are
# converted whole.
BANDED_SUBSAMPLED = frozenset({"yuv420p", "yuvj420p", "yuva420p", "yuv422p", "yuvj422p"})


def error_reason(exc: BaseException) -> str:
    """An error's short reason on one line (FFmpeg's, e.g. "Invalid data found when processing input")."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_file(path: Path) -> None:
    """InputError unless ``path`` is an existing, non-empty file."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is an empty (zero-byte) file: {path}")


def open_container(path: Path) -> av.container.InputContainer:
    """``av.open`` with its failures as one-line InputErrors."""
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: not a media file, or damaged (e.g. an mp4 cut before its "
                         f"index) ({error_reason(exc)})") from None


def rgb_format(frame: av.VideoFrame) -> str:
    """The RGB pixel format a source frame converts to without losing depth (alpha dropped)."""
    name = frame.format.name
    if "f32" in name or "f16" in name:
        return "gbrpf32le"  # swscale's float RGB; to_ndarray gives float32 [H, W, 3]
    if max(c.bits for c in frame.format.components) > 8:
        return "rgb48le"
    return "rgb24"


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in quarter turns (0-3), from the frame's display matrix."""
    return int(round(frame.rotation or 0)) % 360 // 90


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """``(height, width)`` of the frame as displayed (rotation applied)."""
    return (frame.width, frame.height) if quarter_turns(frame) % 2 else (frame.height, frame.width)


def frame_to_rgb(frame: av.VideoFrame, fmt: str) -> np.ndarray:
    """``[H, W, 3]`` array of ``frame`` in RGB format ``fmt`` (see ``rgb_format``), display orientation."""
    rgb = frame.to_ndarray(format=fmt)
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def converts_in_bands(frame: av.VideoFrame, fmt: str) -> bool:
    """Whether bands of ``frame``'s rows convert to ``fmt`` with the same bytes as the whole
    frame: no rotation, even width and height, rows stored top down, and either no chroma
    subsampling or one of ``BANDED_SUBSAMPLED`` to ``rgb24`` (tests/test_frame_views.py checks
    the formats on real frames)."""
    pixel = frame.format
    if quarter_turns(frame) or frame.width % 2 or frame.height % 2:
        return False
    if pixel.has_palette or pixel.is_bayer or pixel.is_bit_stream or any(p.line_size <= 0 for p in frame.planes):
        return False
    if (pixel.chroma_width(frame.width), pixel.chroma_height(frame.height)) == (frame.width, frame.height):
        return True  # no chroma subsampling
    return pixel.name in BANDED_SUBSAMPLED and fmt == "rgb24"


class DecodedFrame(FrameView):
    """A decoded frame in RGB format ``fmt`` (see ``rgb_format``), display orientation,
    converted by swscale a band of rows at a time where that gives the bytes of
    ``frame_to_rgb`` (``converts_in_bands``) and the frame is larger than
    ``WHOLE_MAX_VALUES``; else converted whole on first use and kept."""

    def __init__(self, frame: av.VideoFrame, fmt: str, reformatter: VideoReformatter | None = None):
        self.frame, self.fmt = frame, fmt
        self.reformatter = reformatter or VideoReformatter()  # one per stream: its swscale set-up is reused
        self.shape = (*display_size(frame), 3)
        self.dtype = np.dtype({"rgb24": np.uint8, "rgb48le": np.uint16}.get(fmt, np.float32))
        self.banded = converts_in_bands(frame, fmt) and frame.width * frame.height * 3 > WHOLE_MAX_VALUES
        self.whole: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self.banded:
            if self.whole is None:
                self.whole = frame_to_rgb(self.frame, self.fmt)
            return self.whole[start:stop]
        first, last = start - start % 2, stop + stop % 2  # whole 4:2:0 chroma rows (the height is even)
        band = av.VideoFrame(self.frame.width, last - first, self.frame.format.name)
        for source, target in zip(self.frame.planes, band.planes):
            step = self.frame.height // source.height  # 1, or 2 for 4:2:0 chroma
            rows = np.frombuffer(source, np.uint8).reshape(-1, source.line_size)[first // step:last // step]
            width = min(source.line_size, target.line_size)
            np.frombuffer(target, np.uint8).reshape(-1, target.line_size)[:len(rows), :width] = rows[:, :width]
        band.colorspace, band.color_range = self.frame.colorspace, self.frame.color_range
        return self.reformatter.reformat(band, format=self.fmt).to_ndarray()[start - first:stop - first]

    def array(self) -> np.ndarray:
        if self.banded:
            return frame_to_rgb(self.frame, self.fmt)  # not kept: the caller holds it
        return self.rows(0, self.shape[0])  # converted once, kept for the view's other readers


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  report: DecodeReport) -> Iterator[av.VideoFrame]:
    """Demux ``stream`` packet by packet and decode each, as ffmpeg does.

    A packet the decoder rejects counts in ``report.dropped`` and decoding goes on with the
    next; frames output with concealed errors count in ``report.concealed`` and are kept. A
    container that cannot be read further (``report.read_error``) ends the stream after the
    decoder is flushed. No frame is held here while the next packet decodes.
    """
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            report.read_error = error_reason(exc)
            packet = None  # flush: the frames still inside the decoder
        try:
            decoded = stream.decode(packet)
        except av.error.FFmpegError:
            report.dropped += 1
            decoded = []
        decoded.reverse()  # popped one by one, so the list keeps no frame already yielded
        while decoded:
            frame = decoded.pop()
            report.concealed += bool(frame.is_corrupt)
            yield frame
            del frame
        if packet is None:
            return


def stream_rate(stream: av.video.stream.VideoStream) -> Fraction:
    return Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)


def duration_tag(stream: av.video.stream.VideoStream) -> float:
    """Seconds of the per-stream ``DURATION`` tag (matroska/webm writers set it); 0 if none."""
    text = stream.metadata.get("DURATION") or stream.metadata.get("duration") or ""
    try:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return 0.0


def frames_estimate(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frames the container announces: header count, else duration x rate (stream duration,
    matroska ``DURATION`` tag, then container duration); 0 when unknown."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return 0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = duration_tag(stream) or (container.duration or 0) / av.time_base
    return int(round(seconds * float(rate)))


def still_role(stream: av.video.stream.VideoStream, frames: int) -> str:
    """Why a stream is a picture rather than the video ("cover art", "a still image"), or ""."""
    if stream.disposition & Disposition.attached_pic:
        return "cover art"
    if stream.disposition & Disposition.still_image or (stream.codec_context.name in STILL_CODECS and frames <= 1):
        return "a still image"
    return ""


def stream_label(stream: av.video.stream.VideoStream, frames: int) -> str:
    """``#1 (h264 1920x1080, ~240 frames)``: a stream as the messages name it."""
    cc = stream.codec_context
    count = f", ~{frames} frame{'s' if frames > 1 else ''}" if frames else ""
    role = still_role(stream, frames)
    return f"#{stream.index} ({cc.name} {cc.width}x{cc.height}{count}{', ' + role if role else ''})"


def choose_stream(container: av.container.InputContainer, path: Path,
                  forced: int | None) -> tuple[av.video.stream.VideoStream, str]:
    """The video stream to decode and the reasons, as a phrase for ``SourceInfo.description``.

    Cover art and still-image streams are never chosen on their own; among the rest the
    default-disposition stream wins, then the one with the most frames. ``forced`` (a
    global stream index, as ffprobe numbers them) picks one; InputErrors name the file.
    """
    videos = list(container.streams.video)
    if not videos:
        raise InputError(f"no video stream in {path} (audio-only or data file)")
    counts = {s.index: frames_estimate(container, s) for s in videos}
    if forced is not None:
        match = [s for s in videos if s.index == forced]
        if not match:
            listed = ", ".join(stream_label(s, counts[s.index]) for s in videos)
            raise InputError(f"no video stream #{forced} in {path}; its video streams: {listed}")
        return match[0], f"chosen with stream={forced}"
    roles = {s.index: still_role(s, counts[s.index]) for s in videos}
    real = [s for s in videos if not roles[s.index]]
    if not real:
        if all(r == "cover art" for r in roles.values()):
            raise InputError(f"no video stream in {path} (only cover art)")
        still = next(s.index for s in videos if roles[s.index] != "cover art")
        raise InputError(f"no video stream in {path} (only a still image; stream={still} reads it anyway)")
    chosen = max(real, key=lambda s: (bool(s.disposition & Disposition.default), counts[s.index]))
    others = [s for s in videos if s is not chosen]
    if not others:
        return chosen, ""
    notes = []
    for s in others:
        if roles[s.index]:
            notes.append(f"stream #{s.index} is {roles[s.index]}")
        elif chosen.disposition & Disposition.default and not s.disposition & Disposition.default:
            notes.append(f"stream #{s.index} is not the default")
        else:
            notes.append(f"stream #{s.index} has {'fewer' if counts[s.index] < counts[chosen.index] else 'as many'} "
                         f"frames")
    return chosen, "; ".join(notes)


class VideoSource(FrameSource):
    """A video file; opening reads the header and decodes the first frame (InputError if none decodes)."""

    def __init__(self, path: str, stream: int | None = None, fps: float | None = None):
        self.path = Path(path)
        check_file(self.path)
        self.report = DecodeReport()
        with open_container(self.path) as container:
            chosen, why = choose_stream(container, self.path, stream)
            self.stream_index = chosen.index
            estimate = frames_estimate(container, chosen)
            first = next(decode_frames(container, chosen, DecodeReport()), None)
            if first is None:
                raise InputError(f"no decodable video frame in {self.path}")
            self.rgb_format = rgb_format(first)
            height, width = display_size(first)
            rate = float(fps) if fps else float(stream_rate(chosen))
            codec = chosen.codec_context.name
            n_streams = len(container.streams)
        count = f", ~{estimate} frame{'s' if estimate > 1 else ''}" if estimate else ""
        what = f"{codec} {width}x{height}, {rate:g} fps{count}"
        description = (f"video stream #{self.stream_index} of {n_streams} ({what}); {why}" if why
                       else f"video ({what})")
        self.info = SourceInfo(path=str(self.path), kind="video", width=width, height=height, fps=rate,
                               frames_estimate=estimate, frame_numbers=None, description=description)

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``[start, start + count)`` in decode order (frames before ``start`` are
        decoded and skipped); see the module docstring for dtypes."""
        for view in self.views(start, count):
            yield view.array()
            del view

    def views(self, start: int = 0, count: int | None = None) -> Iterator[DecodedFrame]:
        """The frames of ``frames`` as ``DecodedFrame`` views, converted to RGB as they are read."""
        check_range(start, count)
        report = self.report = DecodeReport(expected=self.info.frames_estimate)
        stop = None if count is None else start + count
        if stop == start:
            return
        size = (self.info.height, self.info.width)
        with open_container(self.path) as container:
            stream = container.streams[self.stream_index]
            stream.thread_type = "AUTO" if self.info.width * self.info.height <= FRAME_THREADS_MAX_PIXELS else "SLICE"
            index = -1
            reformatter = VideoReformatter()
            for frame in decode_frames(container, stream, report):
                index += 1
                report.frames_read = index + 1
                if display_size(frame) != size:
                    size = display_size(frame)
                    report.size_changes.append((index, size))
                if index < start:
                    del frame
                    continue
                view = DecodedFrame(frame, self.rgb_format, reformatter)
                del frame
                report.decoded += 1
                yield view
                del view  # the caller's turn is over: not held while the next frame decodes
                if stop is not None and index + 1 >= stop:
                    return
        report.reached_end = True

    def files(self) -> list[Path]:
        return [Path(self.path)]

    def identity(self) -> str:
        """sha256 over the stream's codec parameters (name, coded size, extradata) and every
        demuxed packet's bytes and time stamp (demux only, no decode).

        Time stamps enter relative to the first packet's, in milliseconds (the precision
        matroska keeps), so a remux of the same packets into another container gives the
        same identity.
        """
        digest = hashlib.sha256()
        with open_container(self.path) as container:
            stream = container.streams[self.stream_index]
            cc = stream.codec_context
            digest.update(f"{cc.name} {cc.width}x{cc.height}\n".encode())
            digest.update(cc.extradata or b"")
            first_pts = None
            try:
                for packet in container.demux(stream):
                    if not packet.size:
                        continue  # end-of-stream flush packets carry no data
                    if packet.pts is not None and first_pts is None:
                        first_pts = packet.pts
                    pts = None if packet.pts is None else (packet.pts - first_pts) * packet.time_base
                    digest.update(f"\n{None if pts is None else round_half_up(pts * 1000)} {packet.size}\n".encode())
                    digest.update(packet)
            except av.error.FFmpegError as exc:  # unreadable past here: the readable part is the content
                digest.update(f"\nread error: {error_reason(exc)}".encode())
        return digest.hexdigest()


def round_half_up(value: Fraction) -> int:
    """Nearest integer, halves away from zero (as FFmpeg rescales time stamps)."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value) + Fraction(1, 2))

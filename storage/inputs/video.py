"""Video files through PyAV: stream choice, decoding past damage, content identity.

Frames come out RGB as displayed: the display-matrix rotation is applied, and a stream of
non-square pixels (a sample aspect ratio other than 1, e.g. anamorphic or DV video) is scaled
to square pixels by swscale as it is converted (width x SAR, height kept), so the model and
every output see the picture's displayed shape. Alpha is dropped: ``uint8 [H, W, 3]`` for
8-bit streams, ``uint16 [H, W, 3]`` (``rgb48le``, full 0-65535 range) for streams of more
than 8 bits per channel, ``float32`` for float streams. Each frame keeps its own decoded
size, so a resolution change mid-stream shows as frames of another shape (recorded in
``DecodeReport.size_changes``), and its time stamp (``DecodedFrame.time``: seconds from the
stream's first frame; variable-frame-rate video keeps its real timing). A stream's
``timecode`` tag is the source's timecode.

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
from ..timecode import parse_timecode
from .source import DecodeReport, FrameSource, FrameView, SourceInfo, check_range

# Codecs whose streams of one frame (or an unknown count) are pictures (posters, thumbnails), not the video.
STILL_CODECS = frozenset({"mjpeg", "png", "bmp", "webp", "tiff"})
DEFAULT_FPS = Fraction(25)  # when the container announces no rate at all
LENGTH_TOLERANCE = 0.02  # streams within 2% of the longest are equally long (frame counts are estimates)
PROBE_PACKETS = 512  # packets demuxed to count the pictures of several candidate streams (a poster holds 1)
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


def square_width(frame: av.VideoFrame, sar: Fraction) -> int:
    """The stored width of ``frame`` in square pixels: ``width x sar`` (sample aspect ratio), rounded."""
    return frame.width if sar == 1 else max(1, round(frame.width * sar))


def display_size(frame: av.VideoFrame, sar: Fraction = Fraction(1)) -> tuple[int, int]:
    """``(height, width)`` of the frame as displayed: square pixels (``square_width``), rotation applied."""
    width = square_width(frame, sar)
    return (width, frame.height) if quarter_turns(frame) % 2 else (frame.height, width)


def frame_to_rgb(frame: av.VideoFrame, fmt: str, width: int | None = None) -> np.ndarray:
    """``[H, W, 3]`` array of ``frame`` in RGB format ``fmt`` (see ``rgb_format``), display
    orientation; ``width``: scale the stored rows to this width first (non-square pixels)."""
    rgb = frame.to_ndarray(format=fmt) if width in (None, frame.width) else \
        frame.to_ndarray(format=fmt, width=width, height=frame.height)
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
    """A decoded frame in RGB format ``fmt`` (see ``rgb_format``), as displayed (``sar``: the
    stream's sample aspect ratio, scaled to square pixels), converted by swscale a band of
    rows at a time where that gives the bytes of ``frame_to_rgb`` (``converts_in_bands``,
    square pixels) and the frame is larger than ``WHOLE_MAX_VALUES``; else converted whole on
    first use and kept. ``time``: seconds from the stream's first frame (``first_time``, the
    time stamp of the stream's first frame; None: the frame's time is not the stream's)."""

    def __init__(self, frame: av.VideoFrame, fmt: str, reformatter: VideoReformatter | None = None,
                 sar: Fraction = Fraction(1), first_time: float | None = 0.0):
        self.frame, self.fmt = frame, fmt
        self.reformatter = reformatter or VideoReformatter()  # one per stream: its swscale set-up is reused
        self.width = square_width(frame, sar)
        self.shape = (*display_size(frame, sar), 3)
        self.dtype = np.dtype({"rgb24": np.uint8, "rgb48le": np.uint16}.get(fmt, np.float32))
        self.banded = converts_in_bands(frame, fmt) and self.width == frame.width and \
            frame.width * frame.height * 3 > WHOLE_MAX_VALUES
        self.time = None if frame.time is None or first_time is None else frame.time - first_time
        self.whole: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self.banded:
            if self.whole is None:
                self.whole = frame_to_rgb(self.frame, self.fmt, self.width)
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
    before_key = 0  # packets ahead of the first keyframe: nothing to decode them from
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            report.read_error = error_reason(exc)
            packet = None  # flush: the frames still inside the decoder
        if before_key >= 0 and packet is not None and packet.size:
            if packet.is_keyframe:
                report.leading_packets, before_key = before_key, -1  # counted once a keyframe shows they lead
            else:
                before_key += 1
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


def probe_pictures(path: Path, streams: list[av.video.stream.VideoStream]) -> tuple[dict[int, int], bool]:
    """Packets of each of ``streams`` among the container's first ``PROBE_PACKETS`` (demux only),
    and whether that was the whole file (the counts are then exact): what the streams hold,
    whatever their headers say (a matroska poster track can carry the file's duration)."""
    counts = {s.index: 0 for s in streams}
    with open_container(path) as container:
        try:
            for n, packet in enumerate(container.demux([container.streams[i] for i in counts])):
                if n >= PROBE_PACKETS:
                    return counts, False
                counts[packet.stream.index] += bool(packet.size)
        except av.error.FFmpegError:
            return counts, False  # what was read before the damage counts
    return counts, True


def choose_stream(container: av.container.InputContainer, path: Path,
                  forced: int | None) -> tuple[av.video.stream.VideoStream, str]:
    """The video stream to decode and, when there were several, one line saying which and why.

    Cover art and still-image streams are never chosen on their own. Among the rest the
    stream that holds the video wins: the longest (pictures counted by demuxing when the
    file is short, ``probe_pictures``; else frames the container announces, a stream of one
    picture in the first packets being a poster), the default disposition only among streams
    of the same length (``LENGTH_TOLERANCE``), so a one-picture poster on a first, default
    track never beats the video. ``forced`` (a global stream index, as ffprobe numbers them) picks
    one; InputErrors name the file.
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
        return match[0], f"{path}: reading video stream {stream_label(match[0], counts[forced])} (--stream {forced})"
    roles = {s.index: still_role(s, counts[s.index]) for s in videos}
    real = [s for s in videos if not roles[s.index]]
    if not real:
        if all(r == "cover art" for r in roles.values()):
            raise InputError(f"no video stream in {path} (only cover art)")
        still = next(s.index for s in videos if roles[s.index] != "cover art")
        raise InputError(f"no video stream in {path} (only a still image; stream={still} reads it anyway)")
    if len(real) > 1:
        probed, whole = probe_pictures(path, real)
        if whole:
            counts.update(probed)
        elif max(probed.values()) > 1:  # a stream of one picture among many of the others': a poster
            roles.update({i: "a single picture" for i, n in probed.items() if n <= 1})
            real = [s for s in real if not roles[s.index]]
    longest = max(counts[s.index] for s in real)
    candidates = [s for s in real if counts[s.index] >= longest * (1 - LENGTH_TOLERANCE)]
    chosen = max(candidates, key=lambda s: (bool(s.disposition & Disposition.default), counts[s.index], -s.index))
    others = [s for s in videos if s is not chosen]
    if not others:
        return chosen, ""
    notes = []
    for s in others:
        label = stream_label(s, counts[s.index])
        if roles[s.index]:
            notes.append(f"#{s.index} is {roles[s.index]}")
        elif s not in candidates:
            default = ", the default" if s.disposition & Disposition.default else ""
            notes.append(f"{label}{default} holds fewer frames")
        else:
            notes.append(f"#{s.index} is as long but not the default")
    return chosen, (f"{path}: reading video stream {stream_label(chosen, counts[chosen.index])} of "
                    f"{len(videos)}; {'; '.join(notes)} (--stream N picks another)")


def timecode_tag(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> str | None:
    """The ``timecode`` tag of the stream, else of the container or a timecode (tmcd) track; None if none."""
    for metadata in (stream.metadata, container.metadata, *(s.metadata for s in container.streams)):
        found = next((value for key, value in metadata.items() if key.lower() == "timecode"), None)
        if found:
            return found
    return None


class VideoSource(FrameSource):
    """A video file; opening reads the header and decodes the first frame (InputError if none decodes).
    ``fps`` replaces the stream's rate and timing (frames then carry no time stamps)."""

    def __init__(self, path: str, stream: int | None = None, fps: float | None = None):
        self.path = Path(path)
        check_file(self.path)
        self.report = DecodeReport()
        with open_container(self.path) as container:
            chosen, choice = choose_stream(container, self.path, stream)
            self.stream_index = chosen.index
            estimate = frames_estimate(container, chosen)
            first = next(decode_frames(container, chosen, DecodeReport()), None)
            if first is None:
                raise InputError(f"no decodable video frame in {self.path}")
            self.rgb_format = rgb_format(first)
            self.sar = Fraction(chosen.sample_aspect_ratio or chosen.codec_context.sample_aspect_ratio or 1)
            self.first_time = None if fps else first.time or 0.0  # a rate given replaces the stream's timing
            height, width = display_size(first, self.sar)
            rate = float(fps) if fps else float(stream_rate(chosen))
            timecode = parse_timecode(timecode_tag(container, chosen), float(stream_rate(chosen)))
            codec = chosen.codec_context.name
        count = f", ~{estimate} frame{'s' if estimate > 1 else ''}" if estimate else ""
        pixels = f" (stored {first.width}x{first.height}, pixel aspect {self.sar})" if self.sar != 1 else ""
        description = f"video stream #{self.stream_index}: {codec} {width}x{height}{pixels}, {rate:g} fps{count}"
        self.info = SourceInfo(path=str(self.path), kind="video", width=width, height=height, fps=rate,
                               frames_estimate=estimate, frame_numbers=None, description=description,
                               timecode=timecode, choice=choice, stream=self.stream_index)

    def frames(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
        """Frames ``start, start + step, ...`` (``count`` at most) in presentation order (frames
        between them are decoded and skipped); see the module docstring for dtypes."""
        for view in self.views(start, count, step):
            yield view.array()
            del view

    def views(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[DecodedFrame]:
        """The frames of ``frames`` as ``DecodedFrame`` views, converted to RGB as they are read."""
        check_range(start, count, step)
        report = self.report = DecodeReport(expected=self.info.frames_estimate)
        if count == 0:
            return
        size = (self.info.height, self.info.width)
        with open_container(self.path) as container:
            stream = container.streams[self.stream_index]
            stream.thread_type = "AUTO" if self.info.width * self.info.height <= FRAME_THREADS_MAX_PIXELS else "SLICE"
            index = -1
            yielded = 0
            reformatter = VideoReformatter()
            for frame in decode_frames(container, stream, report):
                index += 1
                report.frames_read = index + 1
                if display_size(frame, self.sar) != size:
                    size = display_size(frame, self.sar)
                    report.size_changes.append((index, size))
                if index < start or (index - start) % step:
                    del frame
                    continue
                view = DecodedFrame(frame, self.rgb_format, reformatter, self.sar, self.first_time)
                del frame
                report.decoded += 1
                yield view
                del view  # the caller's turn is over: not held while the next frame decodes
                yielded += 1
                if count is not None and yielded >= count:
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
            pixels = f" sar {self.sar}" if self.sar != 1 else ""  # scaled by it: part of the frames' content
            digest.update(f"{cc.name} {cc.width}x{cc.height}{pixels}\n".encode())
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

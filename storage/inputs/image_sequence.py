"""Image sequences: a folder of frames, a printf pattern (``shot_%04d.exr``, ``shot_####.exr``)
or a glob (``plates/*.png``).

Readers: FFmpeg's image decoders through PyAV for png, jpg/jpeg, tif/tiff and dpx, decoded
strictly (a truncated or damaged file is an error, not a half-grey frame); OpenEXR (pip
``OpenEXR>=3.3``, imported only when an exr is read) for exr.

Frames are RGB ``[H, W, 3]``, alpha dropped, a single channel repeated as grey, a JPEG's EXIF
rotation applied (mirroring orientations are not):
- 8-bit files: ``uint8``; files of more than 8 bits per channel (16-bit png/tiff, 10/12/16-bit
  dpx): ``uint16`` over the full 0-65535 range (dpx code values as stored: no log-to-linear);
- exr: ``float32`` in [0, 1]. EXR holds scene-linear light, so values are clipped to [0, 1]
  and encoded with the sRGB transfer function (display-referred, like the other formats);
  the frame is the file's display window (first part), pixels outside its data window black.

Files are sorted naturally (``frame2`` before ``frame10``); frame numbers are the number in
each name (the ``%d`` field of a pattern, else the last run of digits). Two files of one
number (``frame_3``, ``frame_003``) are an error naming both; a gap in the numbering is an
``InputWarning``; every frame must have the first frame's size (checked as frames are read,
the error naming the first file of another size). The first EXR file's ``timeCode`` header,
if any, is the sequence's timecode (labelling that file's number).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ...errors import InputError, InputWarning
from ..timecode import Timecode, parse_timecode
from .source import DecodeReport, FrameSource, SourceInfo, check_range
from .video import error_reason, frame_to_rgb, rgb_format

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".dpx"})
DEFAULT_FPS = 24.0
PRINTF_FIELD = re.compile(r"%(\d*)d|#+")  # shot_%04d.exr, shot_%d.exr, shot_####.exr
LAST_NUMBER = re.compile(r"(\d+)(?=\D*$)")
NATURAL_PARTS = re.compile(r"(\d+)")
GLOB_MAGIC = frozenset("*?[")
DTYPE_WORDS = {"rgb24": "8-bit", "rgb48le": "16-bit", "gbrpf32le": "float"}


def is_sequence_spec(spec: str) -> bool:
    """True for a printf pattern (``%04d``, ``####`` in the file name) or a glob (``*?[``)."""
    return bool(PRINTF_FIELD.search(Path(spec).name)) or any(c in GLOB_MAGIC for c in spec)


def natural_key(text: str) -> list:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in NATURAL_PARTS.split(text)]


@dataclass(frozen=True)
class Listing:
    """The files of a sequence in order, their frame numbers (None when the names carry none),
    the digits the names write them with (the fewest; 0 without numbers) and the label
    messages use for the sequence (``plates/``, ``shot_%04d.exr``)."""

    label: str
    files: tuple[Path, ...]
    numbers: tuple[int, ...] | None
    digits: int = 0


def list_sequence(spec: str) -> Listing:
    """Find the files of a folder, printf pattern or glob; InputError if none or of mixed types."""
    path = Path(spec)
    if PRINTF_FIELD.search(path.name) and not path.is_dir():
        listing = list_pattern(spec)
        check_types(spec, listing.files)
        return listing
    if path.is_dir():
        label = spec if spec.endswith("/") else spec + "/"
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    else:
        label = spec
        files = [Path(p) for p in glob.glob(spec) if Path(p).is_file()]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    check_types(label, images)
    return numbered_by_name(label, images)


def check_types(label: str, files: list[Path] | tuple[Path, ...]) -> None:
    """InputError when there are no image files, or files of more than one type."""
    if not files:
        raise InputError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {label}")
    suffixes = sorted({p.suffix.lower() for p in files})
    if len(suffixes) > 1:
        raise InputError(f"{label} mixes image types ({', '.join(suffixes)}): keep one type per sequence")


def numbered_by_name(label: str, files: list[Path]) -> Listing:
    """Natural order; numbers from the last run of digits of each name. Names that all carry a
    number but differ elsewhere (``a_0001``, ``b_0001``) are several sequences: InputError."""
    files.sort(key=lambda p: (natural_key(str(p)), str(p)))  # ties (frame_3, frame_003) in a fixed order
    found = [LAST_NUMBER.search(p.stem) for p in files]
    if not all(found):
        return Listing(label, tuple(files), None)
    shapes = sorted({p.stem[:m.start()] + "#" + p.stem[m.end():] + p.suffix for p, m in zip(files, found)})
    if len(shapes) > 1:
        raise InputError(f"{label} holds {len(shapes)} sequences ({', '.join(shapes[:3])}"
                         f"{', ...' if len(shapes) > 3 else ''}){pattern_hint(files, found, shapes[0])}")
    numbers = tuple(int(m.group(1)) for m in found)
    first_of: dict[int, int] = {}
    for k, number in enumerate(numbers):
        if number in first_of:
            fields = [found[i].group(1) for i in (first_of[number], k)]
            patterns = " or ".join(shapes[0].replace("#", f"%0{len(f)}d" if f.startswith("0") else "%d")
                                   for f in fields)
            raise InputError(f"{label}: {files[first_of[number]]} and {files[k]} both carry frame number {number}: "
                             f"keep one, or give the pattern of one ({patterns})")
        first_of[number] = k
    return Listing(label, tuple(files), numbers, min(len(m.group(1)) for m in found))


def pattern_number(pattern: str, name: str) -> tuple[int, int] | None:
    """``(number, digits)`` of file ``name`` under the printf file-name ``pattern``, or None when it
    does not match: ``%04d`` / ``####`` match numbers written with at least that many digits,
    zero-padded (as printf writes them)."""
    field = PRINTF_FIELD.search(pattern)
    width = len(field.group(0)) if field.group(0).startswith("#") else int(field.group(1) or 0)
    match = re.fullmatch(re.escape(pattern[:field.start()]) + r"(\d+)" + re.escape(pattern[field.end():]), name)
    if not match or str(int(match.group(1))).zfill(width) != match.group(1):
        return None
    return int(match.group(1)), len(match.group(1))


def pattern_hint(files: list[Path], found: list, shape: str) -> str:
    """``: give a pattern such as plates/a_%04d.png`` for the sequence of ``shape``, written with
    the padding its files have, or "" when no printf pattern matches them all."""
    digits = [m.group(1) for p, m in zip(files, found) if p.stem[:m.start()] + "#" + p.stem[m.end():] + p.suffix == shape]
    widths = {len(d) for d in digits}
    padded = len(widths) == 1 and any(d.startswith("0") for d in digits)
    field = f"%0{widths.pop()}d" if padded else "%d"
    pattern = str(files[0].parent / shape.replace("#", field))
    if len(list_pattern(pattern).files) != len(digits):
        return ""
    return f": give a pattern such as {pattern}"


def list_pattern(spec: str) -> Listing:
    """Files matching a printf pattern (``pattern_number``), by frame number."""
    path = Path(spec)
    found = []
    for candidate in (path.parent.iterdir() if path.parent.is_dir() else ()):
        number = pattern_number(path.name, candidate.name)
        if number and candidate.is_file():
            found.append((*number, candidate))
    found.sort()
    return Listing(spec, tuple(p for _, _, p in found), tuple(n for n, _, _ in found),
                   min((d for _, d, _ in found), default=0))


def same_folder(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def sequence_includes(spec: str, path: Path) -> bool:
    """Whether ``list_sequence(spec)`` lists a file at ``path`` (once it exists): how an output is
    kept from becoming part of its own input."""
    path, spec_path = Path(path), Path(spec)
    if spec_path.is_dir():
        return (not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
                and same_folder(path.parent, spec_path))
    if PRINTF_FIELD.search(spec_path.name):
        return same_folder(path.parent, spec_path.parent) and pattern_number(spec_path.name, path.name) is not None
    parts, pattern = Path(os.path.abspath(path)).parts, Path(os.path.abspath(spec)).parts
    return (path.suffix.lower() in IMAGE_EXTENSIONS and len(parts) == len(pattern)
            and all(fnmatch.fnmatchcase(part, rule) and (rule.startswith(".") or not part.startswith(".")
                                                        or part == rule)
                    for part, rule in zip(parts, pattern)))


def gap_warning(label: str, numbers: tuple[int, ...]) -> str:
    """``plates/: frames 1005-1007 missing (numbering gap)``, or "" when the numbers run without a gap."""
    ordered = sorted(numbers)
    gaps = [(a + 1, b - 1) for a, b in zip(ordered, ordered[1:]) if b - a > 1]
    if not gaps:
        return ""
    missing = sum(b - a + 1 for a, b in gaps)
    spans = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in gaps[:5])
    more = f" and {len(gaps) - 5} more gaps" if len(gaps) > 5 else ""
    return (f"{label}: frame{'s' if missing > 1 else ''} {spans}{more} missing "
            f"(numbering gap{'s' if len(gaps) > 1 else ''})")


def decode_image(path: Path, fmt: str | None) -> tuple[np.ndarray, str]:
    """An image file through FFmpeg as RGB in ``fmt`` (None: its own depth, see ``rgb_format``);
    returns the array and the format used. Decoded with ``err_detect=explode``, so a truncated
    file raises (OSError/FFmpegError) instead of decoding partly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "explode"}
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                fmt = fmt or rgb_format(frame)
                return frame_to_rgb(frame, fmt), fmt
    raise av.error.InvalidDataError(0, "no image decoded")


def read_float_tiff(path: Path) -> np.ndarray | None:
    """``float32 [H, W, 3]`` in [0, 1] of a one-channel 32-bit float TIFF (FFmpeg decodes no
    such file; Pillow does), NaN -> 0; None for any other file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode != "F":
                return None
            grey = np.asarray(image, dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    grey = np.clip(np.nan_to_num(grey, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=2)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> sRGB-encoded float32 in [0, 1] (clipped first; NaN -> 0)."""
    x = np.clip(np.nan_to_num(linear.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(srgb, 0.0, 1.0).astype(np.float32)  # float64 inside: linear 1.0 gives exactly 1.0


def exr_rgb(channels: dict, path: Path) -> np.ndarray:
    """``[H, W, 3]`` linear RGB from an EXR part's channels: RGB(A), else the first layer with
    RGB, else luminance ``Y`` or the only channel as grey."""
    grouped = [name for name in ("RGB", "RGBA") if name in channels]
    grouped += sorted(name for name, ch in channels.items() if ch.pixels.ndim == 3 and name not in grouped)
    if grouped:
        return channels[grouped[0]].pixels[..., :3]
    grey = "Y" if "Y" in channels else next(iter(channels)) if len(channels) == 1 else None
    if grey is None:
        raise InputError(f"{path}: no RGB or Y channels to read (has {', '.join(sorted(channels))})")
    return np.repeat(channels[grey].pixels[..., None], 3, axis=2)


def display_window(pixels: np.ndarray, data: tuple, display: tuple) -> np.ndarray:
    """Place the data window's ``pixels`` in the display window (black outside, cropped beyond)."""
    (dx, dy), _ = data
    (wx0, wy0), (wx1, wy1) = display
    if (dx, dy) == (wx0, wy0) and pixels.shape[:2] == (wy1 - wy0 + 1, wx1 - wx0 + 1):
        return pixels
    canvas = np.zeros((wy1 - wy0 + 1, wx1 - wx0 + 1, 3), np.float32)
    y0, x0 = max(dy, wy0), max(dx, wx0)
    y1, x1 = min(dy + pixels.shape[0], wy1 + 1), min(dx + pixels.shape[1], wx1 + 1)
    if y1 > y0 and x1 > x0:
        canvas[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = pixels[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return canvas


def exr_timecode(path: Path, fps: float, number: int) -> Timecode | None:
    """The ``timeCode`` header of an EXR file as the ``Timecode`` of frame ``number``; None if it has none."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path), header_only=True) as exr:
            code = exr.parts[0].header.get("timeCode")
    except Exception:  # an unreadable file is reported when its pixels are read
        return None
    if code is None:
        return None
    label = f"{code.hours:02d}:{code.minutes:02d}:{code.seconds:02d}{';' if code.dropFrame else ':'}{code.frame:02d}"
    return parse_timecode(label, fps, number)


def read_exr(path: Path) -> np.ndarray:
    """``float32 [H, W, 3]`` in [0, 1]: the first part's display window, scene-linear values
    clipped to [0, 1] and sRGB-encoded (``linear_to_srgb``)."""
    try:
        import OpenEXR
    except ImportError:
        raise InputError(f"reading {path} needs the OpenEXR package (pip install 'OpenEXR>=3.3')") from None
    try:
        with OpenEXR.File(str(path)) as exr:
            part = exr.parts[0]
            pixels = exr_rgb(part.channels, path)
            header = part.header
            pixels = display_window(pixels, header["dataWindow"], header["displayWindow"])
    except InputError:
        raise
    except Exception as exc:  # OpenEXR raises assorted types (ValueError, IndexError, RuntimeError) for bad files
        raise OSError(error_reason(exc)) from None
    return linear_to_srgb(pixels)


class ImageSequence(FrameSource):
    """Frames from image files, read one file at a time; opening reads the first file."""

    def __init__(self, spec: str, fps: float | None = None):
        listing = list_sequence(spec)
        self.spec, self.label, self.paths = spec, listing.label, listing.files
        self.report = DecodeReport()
        self.rgb_format: str | None = None
        if listing.numbers:
            gap = gap_warning(self.label, listing.numbers)
            if gap:
                warnings.warn(gap, InputWarning, stacklevel=3)
        height, width = self.read(0).shape[:2]
        rate = float(fps) if fps else DEFAULT_FPS
        suffix = self.paths[0].suffix.lower()
        depth = "float scene-linear, shown as sRGB" if suffix == ".exr" else DTYPE_WORDS[self.rgb_format]
        span = f", frames {listing.numbers[0]}-{listing.numbers[-1]}" if listing.numbers else ""
        rate_note = "" if fps else " (default: set fps to change)"
        description = (f"image sequence {self.label}: {len(self.paths)} {suffix[1:]} files{span} "
                       f"({depth} {width}x{height}), {rate:g} fps{rate_note}")
        timecode = exr_timecode(self.paths[0], rate, listing.numbers[0] if listing.numbers else 0) \
            if suffix == ".exr" else None
        self.info = SourceInfo(path=spec, kind="images", width=width, height=height, fps=rate,
                               frames_estimate=len(self.paths), frame_numbers=listing.numbers,
                               description=description, timecode=timecode, number_digits=listing.digits)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as an array; InputError naming the file if it cannot be read."""
        path = self.paths[index]
        try:
            if path.suffix.lower() == ".exr":
                return read_exr(path)
            try:
                rgb, self.rgb_format = decode_image(path, self.rgb_format)
            except (OSError, av.error.FFmpegError) as exc:
                rgb = read_float_tiff(path) if path.suffix.lower() in (".tif", ".tiff") else None
                if rgb is None:
                    raise exc from None
                self.rgb_format = "gbrpf32le"
            return rgb
        except (OSError, av.error.FFmpegError, IndexError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read frame {index} of {self.label}: {path} is damaged or not an image "
                             f"({error_reason(exc)})") from None

    def frames(self, start: int = 0, count: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
        """Frames ``start, start + step, ...`` (``count`` at most), each read from its file when
        asked for (files between them are not read)."""
        check_range(start, count, step)
        report = self.report = DecodeReport(expected=len(self.paths))
        indices = range(start, len(self.paths), step)[:count]
        size = (self.info.height, self.info.width)
        for index in indices:
            rgb = self.read(index)
            if rgb.shape[:2] != size:
                raise InputError(f"{self.paths[index]} is {rgb.shape[1]}x{rgb.shape[0]}, but {self.label} starts "
                                 f"at {size[1]}x{size[0]} ({self.paths[0].name}): frames of mixed sizes")
            report.frames_read = index + 1
            report.decoded += 1
            yield rgb
            del rgb  # not held while the next file is read
        report.reached_end = not indices or indices[-1] + step >= len(self.paths)

    def files(self) -> list[Path]:
        return list(self.paths)

    def includes(self, path: Path) -> bool:
        return super().includes(path) or sequence_includes(self.spec, path)

    def identity(self) -> str:
        """sha256 over each file's name and bytes, in sequence order."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(f"{path.name}\n{path.stat().st_size}\n".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

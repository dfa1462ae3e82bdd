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
each name (the ``%d`` field of a pattern, else the last run of digits). A gap in the
numbering is an ``InputWarning``; every frame must have the first frame's size (checked as
frames are read, the error naming the first file of another size).
"""

from __future__ import annotations

import glob
import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ...errors import InputError, InputWarning
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
    """The files of a sequence in order, their frame numbers (None if not all unique) and the
    label messages use for the sequence (``plates/``, ``shot_%04d.exr``)."""

    label: str
    files: tuple[Path, ...]
    numbers: tuple[int, ...] | None


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
    files.sort(key=lambda p: natural_key(str(p)))
    found = [LAST_NUMBER.search(p.stem) for p in files]
    if not all(found):
        return Listing(label, tuple(files), None)
    shapes = sorted({p.stem[:m.start()] + "#" + p.stem[m.end():] + p.suffix for p, m in zip(files, found)})
    if len(shapes) > 1:
        raise InputError(f"{label} holds {len(shapes)} sequences ({', '.join(shapes[:3])}"
                         f"{', ...' if len(shapes) > 3 else ''}): give a pattern such as "
                         f"{shapes[0].replace('#', '%04d')}")
    numbers = tuple(int(m.group(1)) for m in found)
    return Listing(label, tuple(files), numbers if len(set(numbers)) == len(numbers) else None)


def list_pattern(spec: str) -> Listing:
    """Files matching a printf pattern, by frame number; ``%04d`` / ``####`` match numbers
    written with at least that many digits, zero-padded (as printf writes them)."""
    path = Path(spec)
    field = PRINTF_FIELD.search(path.name)
    width = len(field.group(0)) if field.group(0).startswith("#") else int(field.group(1) or 0)
    name = re.compile(re.escape(path.name[:field.start()]) + r"(\d+)" + re.escape(path.name[field.end():]))
    folder = path.parent
    found = []
    for candidate in (folder.iterdir() if folder.is_dir() else ()):
        match = name.fullmatch(candidate.name)
        if match and str(int(match.group(1))).zfill(width) == match.group(1) and candidate.is_file():
            found.append((int(match.group(1)), candidate))
    found.sort()
    return Listing(spec, tuple(p for _, p in found), tuple(n for n, _ in found))


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
        self.label, self.paths = listing.label, listing.files
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
        self.info = SourceInfo(path=spec, kind="images", width=width, height=height, fps=rate,
                               frames_estimate=len(self.paths), frame_numbers=listing.numbers,
                               description=description)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as an array; InputError naming the file if it cannot be read."""
        path = self.paths[index]
        try:
            if path.suffix.lower() == ".exr":
                return read_exr(path)
            rgb, self.rgb_format = decode_image(path, self.rgb_format)
            return rgb
        except (OSError, av.error.FFmpegError, IndexError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read frame {index} of {self.label}: {path} is damaged or not an image "
                             f"({error_reason(exc)})") from None

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``[start, start + count)``, each read from its file when asked for."""
        check_range(start, count)
        report = self.report = DecodeReport(expected=len(self.paths))
        stop = len(self.paths) if count is None else min(start + count, len(self.paths))
        size = (self.info.height, self.info.width)
        for index in range(start, stop):
            rgb = self.read(index)
            if rgb.shape[:2] != size:
                raise InputError(f"{self.paths[index]} is {rgb.shape[1]}x{rgb.shape[0]}, but {self.label} starts "
                                 f"at {size[1]}x{size[0]} ({self.paths[0].name}): frames of mixed sizes")
            report.frames_read = index + 1
            report.decoded += 1
            yield rgb
            del rgb  # not held while the next file is read
        report.reached_end = stop == len(self.paths)

    def files(self) -> list[Path]:
        return list(self.paths)

    def identity(self) -> str:
        """sha256 over each file's name and bytes, in sequence order."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(f"{path.name}\n{path.stat().st_size}\n".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

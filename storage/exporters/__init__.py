"""Exporters: the run's depth as files people use. One module per format; names defined here once.

``OUTPUTS`` maps each format to the file (or folder) it writes under the output folder,
``{name}`` being the input's stem: ``output_path`` is the one place those names are made,
with ``frame_path`` (files inside a per-frame folder, named by a template such as
``{name}_{frame:06d}``), ``partial_path`` (a whole-file output while it is written) and
``scale_path`` (16-bit mapping files) for the files that go with them. ``ledger`` keeps the
list of files runs wrote in an output folder: the only files a run replaces or removes.

Formats (module): ``npy`` (npy), ``npz`` (npz), ``png16`` (png16), ``exr`` (exr), ``ply``
(ply), ``gray16`` (gray16), ``mp4`` and ``sbs`` (colour_video). ``sidecar`` is not a format
one asks for: the ``depth.json`` that says what every output's values are (meaning),
written next to them on every run.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

OUTPUTS = {
    "npy": "{name}_depth.npy",
    "npz": "{name}_depth.npz",
    "png16": "png16",
    "exr": "exr",
    "ply": "ply",
    "gray16": "{name}_depth16.mkv",
    "mp4": "{name}_depth.mp4",
    "sbs": "{name}_sbs.mp4",
    "sidecar": "{name}_depth.json",
    "shots": "{name}_shots.json",
    "contact": "{name}_shots.png",
}
FRAME_FORMATS = {"png16": ".png", "exr": ".exr", "ply": ".ply"}  # one file per frame in a folder: their suffix
DEFAULT_FRAME_DIGITS = 6  # frame numbers of inputs that write none (video): up to 999999, 4.6 hours at 60 fps
TEMPLATE_FIELDS = ("name", "frame")
SCALE_FILE = "scale.json"  # the 16-bit mapping: inside a folder output, or STEM.scale.json beside a file


def output_path(out_dir: str | Path, name: str, fmt: str) -> Path:
    """Where format ``fmt`` of the video named ``name`` is written under ``out_dir``."""
    return Path(out_dir) / OUTPUTS[fmt].format(name=name)


def partial_path(output: Path) -> Path:
    """Where a whole-file output is written until it is complete (then renamed to ``output``)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def frame_template(digits: int) -> str:
    """The default per-frame file name: ``{name}_`` and the frame number zero-padded to ``digits``."""
    return "{name}_{frame:0%dd}" % max(1, digits)


def check_frame_template(template: str) -> None:
    """ValueError unless ``template`` (``str.format`` fields ``name`` and ``frame``) names one
    distinct file per frame number, e.g. ``{name}.{frame:04d}``."""
    what = f"frame file name template '{template}'"
    try:
        fields = [(field, conversion) for _, field, _, conversion in string.Formatter().parse(template)
                  if field is not None]
        if "frame" not in [f for f, _ in fields]:
            raise ValueError("it must hold {frame}, e.g. '{name}.{frame:04d}'")
        if any(f not in TEMPLATE_FIELDS or c for f, c in fields):
            raise ValueError("its fields can be {name} and {frame} only (with a format spec such as :04d)")
        samples = [template.format(name="clip", frame=n) for n in (0, 1, 2, 10, 11, 99999, 100000, 100001)]
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"{what}: {exc}") from None
    if len(set(samples)) < len(samples):
        raise ValueError(f"{what} gives frames the same name ({samples[0]})")
    if any("/" in s or "\0" in s or s.startswith(".") for s in samples):
        raise ValueError(f"{what} must make a file name (no '/', not starting with '.')")


def frame_path(folder: Path, template: str, name: str, number: int, ext: str) -> Path:
    """File of frame ``number`` inside a per-frame output folder (``ext`` with its dot)."""
    return folder / (template.format(name=name, frame=int(number)) + ext)


def frame_file_pattern(template: str, name: str, ext: str) -> re.Pattern:
    """Names ``frame_path`` gives the frames of ``name``, whatever their numbers (a regex)."""
    parts = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field == "name":
            parts.append(re.escape(format(name, spec or "")))
        elif field == "frame":
            parts.append(r"-?\d+" if not spec or spec.endswith("d") else r".+?")
    return re.compile("".join(parts) + re.escape(ext))


def scale_path(output: Path) -> Path:
    """The 16-bit mapping file of a ``png16`` folder (inside it) or a ``gray16`` video (beside it)."""
    output = Path(output)
    return output / SCALE_FILE if not output.suffix else output.with_name(f"{output.stem}.{SCALE_FILE}")

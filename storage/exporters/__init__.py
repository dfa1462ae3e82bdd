"""Exporters: the run's depth as files people use. One module per format; names defined here once.

``OUTPUTS`` maps each format to the file (or folder) it writes under the output folder,
``{name}`` being the input's stem: ``output_path`` is the one place those names are made,
with ``frame_path`` (files inside a per-frame folder) and ``scale_path`` (16-bit mapping
files) for the files that go with them.

Formats (module): ``npy`` (npy), ``npz`` (npz), ``png16`` (png16), ``exr`` (exr), ``ply``
(ply), ``gray16`` (gray16), ``mp4`` and ``sbs`` (colour_video). ``sidecar`` is not a format
one asks for: the ``depth.json`` that says what every output's values are (meaning),
written next to them on every run.
"""

from __future__ import annotations

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
FRAME_FILE = "{name}_{number:06d}{ext}"  # inside png16/, exr/, ply/: named by frame number
SCALE_FILE = "scale.json"  # the 16-bit mapping: inside a folder output, or STEM.scale.json beside a file


def output_path(out_dir: str | Path, name: str, fmt: str) -> Path:
    """Where format ``fmt`` of the video named ``name`` is written under ``out_dir``."""
    return Path(out_dir) / OUTPUTS[fmt].format(name=name)


def frame_path(folder: Path, name: str, number: int, ext: str) -> Path:
    """File of frame ``number`` inside a per-frame output folder (``ext`` with its dot)."""
    return folder / FRAME_FILE.format(name=name, number=number, ext=ext)


def frame_file_number(path: Path, name: str, ext: str) -> int | None:
    """The frame number of a ``frame_path`` file of ``name``, or None if it is not one."""
    prefix = f"{name}_"
    if not (path.name.startswith(prefix) and path.name.endswith(ext)):
        return None
    digits = path.name[len(prefix):len(path.name) - len(ext)]
    return int(digits) if digits.isdigit() else None


def scale_path(output: Path) -> Path:
    """The 16-bit mapping file of a ``png16`` folder (inside it) or a ``gray16`` video (beside it)."""
    output = Path(output)
    return output / SCALE_FILE if not output.suffix else output.with_name(f"{output.stem}.{SCALE_FILE}")

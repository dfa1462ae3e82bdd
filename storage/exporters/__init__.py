"""Exporters: the run's depth as files people use. One module per format; names defined here once.

``OUTPUTS`` maps each format to the file (or folder) it writes under the output folder,
``{name}`` being the input's stem: ``output_path`` is the one place those names are made.
"""

from __future__ import annotations

from pathlib import Path

OUTPUTS = {
    "npy": "{name}_depth.npy",
    "png16": "png16",
    "mp4": "{name}_depth.mp4",
    "sbs": "{name}_sbs.mp4",
}


def output_path(out_dir: str | Path, name: str, fmt: str) -> Path:
    """Where format ``fmt`` of the video named ``name`` is written under ``out_dir``."""
    return Path(out_dir) / OUTPUTS[fmt].format(name=name)

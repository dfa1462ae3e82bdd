"""What a finished job shows: its outputs (from the sidecar), the scrubber's RGB | colour depth
pictures, the shots table, the meaning of the values, and the files to download."""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...storage.layout import STORE_NAME
from .jobs import Job

PER_FRAME = ("exr", "png16", "ply")  # folders of files: downloaded as one zip each


def sidecar(job: Job) -> dict | None:
    """The job's ``NAME_depth.json`` (what the values are, where every output is), once written."""
    found = sorted(job.out.glob("*_depth.json"))
    return json.loads(found[0].read_text()) if found else None


def outputs(job: Job) -> dict[str, Path]:
    """Format -> file or folder of the job's outputs (the sidecar's list)."""
    doc = sidecar(job) or {}
    return {fmt: job.out / rel for fmt, rel in doc.get("outputs", {}).items() if (job.out / rel).exists()}


def downloads(job: Job) -> list[Path]:
    """One file per saved format (per-frame folders zipped into ``JOB/downloads``), the sidecar and
    the shots list."""
    files = []
    for fmt, path in outputs(job).items():
        if fmt in PER_FRAME and path.is_dir():
            archive = job.folder / "downloads" / f"{job.out.name}_{fmt}.zip"
            if not archive.exists():
                archive.parent.mkdir(exist_ok=True)
                partial = shutil.make_archive(str(archive.with_suffix("")) + ".partial", "zip", path)
                Path(partial).replace(archive)
            files.append(archive)
        elif path.is_file():
            files.append(path)
    files.extend(sorted(job.out.glob("*_depth.json")) + sorted(job.out.glob("*_shots.json")))
    return files


def contact_sheet(job: Job) -> Path | None:
    found = sorted(job.out.glob("*_shots.png"))
    return found[0] if found else None


def shots_rows(job: Job) -> list[list]:
    """Shot, first and last frame number, frames, start and end seconds (from ``NAME_shots.json``)."""
    found = sorted(job.out.glob("*_shots.json"))
    if not found:
        return []
    shots = json.loads(found[0].read_text())["shots"]
    return [[s["index"], s["first_frame_number"], s["last_frame_number"], s["frames"], s["start_seconds"],
             s["end_seconds"]] for s in shots]


def meaning_text(job: Job) -> str:
    """The sidecar's description of the values, as a few lines of Markdown."""
    doc = sidecar(job)
    if doc is None:
        return ""
    keys = ("quantity", "near", "range", "normalized_to", "affine_invariant", "metric", "to_inverse_depth", "notes")
    return "\n".join(f"- **{key}**: {doc[key]}" for key in keys if key in doc)


def frame_count(job: Job) -> int:
    from ...result import DepthArray

    return len(DepthArray(job.out / STORE_NAME))


@lru_cache(maxsize=16)
def depth_range(store: Path, mtime: float) -> tuple[float, float]:
    """(min, max) of a finished run's depth: the colour range of its mp4 (cached per store version)."""
    from ...result import DepthArray
    from ...storage.array_reads import value_range

    return value_range(DepthArray(store)._array)


def scrub(job: Job, index: int, colormap: str) -> np.ndarray:
    """``uint8 [H, W', 3]``: frame ``index`` of the job's input beside its depth in ``colormap``."""
    from ...engine.clip import select_clip
    from ...engine.options import RunOptions
    from ...result import DepthArray
    from ...storage.exporters.colour_video import colour_table, colourize
    from ...storage.inputs.in_memory import open_frames
    from ..shots.contact_sheet import thumbnail

    store = job.out / STORE_NAME
    depth = DepthArray(store)[index]
    spec = job.spec
    options = RunOptions(spec["options"])
    source = open_frames(spec["input"], stream=options["stream"], fps=options["fps"])
    clip = select_clip(source.info, options.run_config())[0]
    view = next(iter(source.views(clip.first + index * clip.step, 1, 1)))
    rgb = thumbnail(view, max_side=max(depth.shape))
    lo, hi = depth_range(store, store.stat().st_mtime)
    colour = colourize(depth[None], lo, hi, colour_table(colormap))[0]
    if rgb.shape[:2] != colour.shape[:2]:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize(colour.shape[1::-1], Image.BILINEAR))
    gap = np.full((colour.shape[0], 4, 3), 24, np.uint8)
    return np.concatenate([rgb, gap, colour], axis=1)

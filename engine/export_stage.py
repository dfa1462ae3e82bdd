"""Export stage: stream the run's ``depth [T, H, W]`` into the requested output files."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from ..storage.exporters import ColourVideoExporter, NpyExporter, Png16Exporter, resize_rgb
from ..storage.run_store import RunStore
from ..storage.video import iter_frames
from .latents import resize
from .merge import time_chunks
from .progress import Progress

EXPORT_CHUNK = 8


def value_range(depth) -> tuple[float, float]:
    """(min, max) over the whole depth array, read chunk by chunk."""
    lo, hi = np.inf, -np.inf
    for first, stop in time_chunks(depth.shape[0], depth.chunks[0]):
        chunk = np.asarray(depth[first:stop])
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


def export(store: RunStore, out_dir: Path, name: str, formats: tuple[str, ...], video: str, start: int,
           fps: float, colormap: str, restore_size: tuple[int, int] | None, progress: Progress) -> dict[str, Path]:
    """Write each requested format; returns format -> path. ``zarr`` is the run store itself."""
    depth = store.array("depth")
    t = depth.shape[0]
    size = restore_size or tuple(depth.shape[1:])
    lo, hi = value_range(depth)
    outputs: dict[str, Path] = {"zarr": store.path}
    writers = []
    if "npy" in formats:
        outputs["npy"] = out_dir / f"{name}_depth.npy"
        writers.append(NpyExporter(outputs["npy"], (t, *size)))
    if "png16" in formats:
        outputs["png16"] = out_dir / "png16"
        writers.append(Png16Exporter(outputs["png16"], name, lo, hi))
    for fmt, suffix in (("mp4", "depth"), ("sbs", "sbs")):
        if fmt in formats:
            outputs[fmt] = out_dir / f"{name}_{suffix}.mp4"
            writers.append(ColourVideoExporter(outputs[fmt], fps, size, lo, hi, colormap, side_by_side=fmt == "sbs"))
    rgb_batches = iter_frames(video, start=start, count=t, batch=EXPORT_CHUNK) if "sbs" in formats \
        else itertools.repeat(None)
    timer = progress.stage("export", t)
    for (first, stop), rgb in zip(time_chunks(t, EXPORT_CHUNK), rgb_batches):
        chunk = np.asarray(depth[first:stop])
        if restore_size:
            chunk = resize(torch.from_numpy(chunk)[:, None], restore_size)[:, 0].numpy()
        rgb = None if rgb is None else resize_rgb(rgb, size)
        for writer in writers:
            writer.write(first, chunk, rgb)
        timer.advance(stop - first)
    for writer in writers:
        writer.close()
    return outputs

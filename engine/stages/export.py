"""Export stage: stream the run's ``depth [T, H, W]`` into the requested output files.

Units (``layout.export_unit``): one per time chunk of chunked formats and one per finished
output; ``key`` digests the output's parameters.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import value_range
from ...storage.exporters import OUTPUTS, output_path
from ...storage.exporters.colour_video import ColourVideoExporter, resize_rgb
from ...storage.exporters.npy import NpyExporter
from ...storage.exporters.png16 import Png16Exporter
from ...storage.inputs import open_input
from ...storage.run_store import RunStore
from ..latents import resize
from ..progress import Progress
from .chunks import time_chunks
from .ingest import uint8_batches

EXPORT_CHUNK = 8
STAGE = layout.EXPORT


class StoreUnits:
    """The run store's ``export`` completion records, as exporters see them."""

    def __init__(self, store: RunStore):
        self.store = store

    def is_done(self, unit: str) -> bool:
        return self.store.is_done(STAGE, unit)

    def mark_done(self, unit: str) -> None:
        self.store.mark_done(STAGE, unit)

    def clear(self, prefix: str) -> None:
        for unit in self.store.done_units(STAGE):
            if unit.startswith(prefix):
                self.store.clear_unit(STAGE, unit)


def params_key(*values) -> str:
    """Short digest of an output's parameters: records of other parameters never match."""
    return hashlib.sha256(json.dumps([str(v) for v in values]).encode()).hexdigest()[:10]


def export(store: RunStore, out_dir: Path, name: str, formats: tuple[str, ...], video: str, start: int,
           fps: float, colormap: str, restore_size: tuple[int, int] | None, progress: Progress) -> dict[str, Path]:
    """Write each requested format; returns format -> path. ``zarr`` is the run store itself.

    Resumable: npy and png16 skip time chunks already recorded, colour videos are redone
    unless complete; every output appears under its final name only when complete.
    """
    depth = store.array(layout.DEPTH)
    t = depth.shape[0]
    size = tuple(restore_size or depth.shape[1:])
    lo, hi = value_range(depth)
    units = StoreUnits(store)
    outputs: dict[str, Path] = {"zarr": store.path}
    writers = []
    for fmt in OUTPUTS:
        if fmt in formats:
            outputs[fmt] = output_path(out_dir, name, fmt)
    if "npy" in formats:
        writers.append(NpyExporter(outputs["npy"], (t, *size), units, params_key(name, t, size), EXPORT_CHUNK))
    if "png16" in formats:
        writers.append(Png16Exporter(outputs["png16"], name, lo, hi, units, params_key(name, t, size, lo, hi), t))
    for fmt in ("mp4", "sbs"):
        if fmt in formats:
            writers.append(ColourVideoExporter(outputs[fmt], fps, size, lo, hi, colormap, fmt == "sbs", units,
                                               params_key(name, t, size, lo, hi, fps, colormap, start)))
    sbs = [w for w in writers if isinstance(w, ColourVideoExporter) and w.sbs and not w.complete]
    rgb_batches = uint8_batches(open_input(video).frames(start, t), EXPORT_CHUNK) if sbs else itertools.repeat(None)
    timer = progress.stage(STAGE, t)
    for (first, stop), rgb in zip(time_chunks(t, EXPORT_CHUNK), rgb_batches):
        todo = [writer for writer in writers if writer.needs(first)]
        if not todo:
            timer.advance(stop - first, reused=True)
            continue
        chunk = np.asarray(depth[first:stop])
        if restore_size:
            chunk = resize(torch.from_numpy(chunk)[:, None], restore_size)[:, 0].numpy()
        rgb = None if rgb is None else resize_rgb(rgb, size)
        for writer in todo:
            writer.write(first, chunk, rgb)
        timer.advance(stop - first)
    for writer in writers:
        writer.close()
    return outputs

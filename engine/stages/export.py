"""Export stage: stream the run's ``depth [T, H, W]`` into the requested output files.

Units (``layout.export_unit``): one per time chunk of chunked formats and one per finished
output; ``key`` digests the output's parameters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import value_range
from ...storage.exporters import OUTPUTS, output_path
from ...storage.exporters.colour_video import ColourVideoExporter, resize_rgb
from ...storage.exporters.npy import NpyExporter
from ...storage.exporters.png16 import Png16Exporter
from ...storage.run_store import RunStore
from ..errors import EngineError
from ..latents import resize
from ..progress import Progress
from .chunks import time_chunks

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


def rgb_chunks(frames: Iterator[np.ndarray], t: int, unit: int, source: str) -> Iterator[np.ndarray]:
    """``uint8 [n, H, W, 3]`` per export unit from single frames; an input that now decodes to
    fewer or more than the run's ``t`` frames is an error, never a short or shifted output."""
    for first, stop in time_chunks(t, unit):
        chunk = [frame for _, frame in zip(range(stop - first), frames)]
        if len(chunk) < stop - first:
            raise EngineError(f"{source} now decodes to {first + len(chunk)} frames, but the run has {t}: "
                              "the input changed or is damaged; rerun with --overwrite")
        yield np.stack(chunk)
    if next(frames, None) is not None:
        raise EngineError(f"{source} now decodes to more than the run's {t} frames: the input changed; "
                          "rerun with --overwrite")


def export(store: RunStore, out_dir: Path, name: str, formats: tuple[str, ...], rgb: Callable[[], Iterator],
           source: str, unit: int, fps: float, colormap: str, restore_size: tuple[int, int] | None,
           progress: Progress) -> dict[str, Path]:
    """Write each requested format; returns format -> path. ``zarr`` is the run store itself.

    ``rgb()`` opens the input's frames anew (single ``uint8 [H, W, 3]`` frames of the clip),
    for outputs that show them; ``unit``: frames per export unit.
    Resumable: npy and png16 skip units already recorded, colour videos are redone unless
    complete; every output appears under its final name only when complete.
    """
    depth = store.array(layout.DEPTH)
    t = depth.shape[0]
    if t != store.info["num_frames"]:
        raise EngineError(f"run store {store.path} holds {t} frames of depth for a {store.info['num_frames']}-frame "
                          "run: it is damaged; rerun with --overwrite")
    size = tuple(restore_size or depth.shape[1:])
    lo, hi = value_range(depth)
    units = StoreUnits(store)
    outputs: dict[str, Path] = {"zarr": store.path}
    writers = []
    for fmt in OUTPUTS:
        if fmt in formats:
            outputs[fmt] = output_path(out_dir, name, fmt)
    if "npy" in formats:
        writers.append(NpyExporter(outputs["npy"], (t, *size), units, params_key(name, t, size), unit))
    if "png16" in formats:
        writers.append(Png16Exporter(outputs["png16"], name, lo, hi, units, params_key(name, t, size, lo, hi), t))
    for fmt in ("mp4", "sbs"):
        if fmt in formats:
            writers.append(ColourVideoExporter(outputs[fmt], fps, size, lo, hi, colormap, fmt == "sbs", units,
                                               params_key(name, t, size, lo, hi, fps, colormap, source)))
    needs_rgb = any(isinstance(w, ColourVideoExporter) and w.sbs and not w.complete for w in writers)
    frames = rgb_chunks(rgb(), t, unit, source) if needs_rgb else None
    timer = progress.stage(STAGE, t)
    for first, stop in time_chunks(t, unit):
        colour = None if frames is None else resize_rgb(next(frames), size)
        todo = [writer for writer in writers if writer.needs(first)]
        if not todo:
            timer.advance(stop - first, reused=True)
            continue
        chunk = np.asarray(depth[first:stop])
        if restore_size:
            chunk = resize(torch.from_numpy(chunk)[:, None], restore_size)[:, 0].numpy()
        for writer in todo:
            writer.write(first, chunk, colour)
        timer.advance(stop - first)
    if frames is not None:
        next(frames, None)  # the input must end where the run does
    for writer in writers:
        writer.close()
    return outputs

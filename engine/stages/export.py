"""Export stage: stream the run's ``depth [T, H, W]`` into the requested output files.

Units (``layout.export_unit``): one per time chunk of chunked formats and one per finished
output; ``key`` digests the output's parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import value_range
from ...storage.exporters import OUTPUTS, output_path, scale_path
from ...storage.files import write_text_atomically
from ...storage.exporters.colour_video import ColourVideoExporter
from ...storage.exporters.exr import ExrExporter
from ...storage.exporters.gray16 import Gray16Exporter
from ...storage.exporters.meaning import describe, describe_numbers, sidecar_json
from ...storage.exporters.npy import NpyExporter
from ...storage.exporters.npz import NpzExporter
from ...storage.exporters.ply import DEFAULT_EVERY, DEFAULT_FOV, DEFAULT_STRIDE, PlyExporter
from ...storage.exporters.png16 import Png16Exporter
from ...storage.inputs.source import FrameView, SourceInfo
from ...storage.run_store import RunStore
from ..config import ExecutionOptions
from ..errors import EngineError
from ..execution import Executor, UnitContext
from ..latents import display_frame, resize
from ..progress import Progress
from ..shots.contact_sheet import contact_sheet, thumbnail
from ..shots.shots_json import write_shots_json
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


def rgb_chunks(frames: Iterator[FrameView], t: int, unit: int, size: tuple[int, int],
               source: str) -> Iterator[np.ndarray]:
    """``uint8 [n, *size, 3]`` per export unit from single frames (``display_frame``); an input
    that now decodes to fewer or more than the run's ``t`` frames is an error, never a short or
    shifted output."""
    for first, stop in time_chunks(t, unit):
        chunk = []
        for frame in islice(frames, stop - first):
            chunk.append(display_frame(frame, size))
            del frame  # not held while the next frame decodes
        if len(chunk) < stop - first:
            raise EngineError(f"{source} now decodes to {first + len(chunk)} frames, but the run has {t}: "
                              "the input changed or is damaged; rerun with --overwrite")
        yield np.stack(chunk)
    if next(frames, None) is not None:
        raise EngineError(f"{source} now decodes to more than the run's {t} frames: the input changed; "
                          "rerun with --overwrite")


@dataclass(frozen=True)
class ExportSettings:
    """What to write where: output folder and stem, formats, the input (for RGB), frames per
    unit, frame rate and numbers, and each format's options (see ``export``)."""

    out_dir: Path
    name: str
    formats: tuple[str, ...]
    source: str
    unit: int
    fps: float
    colormap: str = "Spectral"
    restore_size: tuple[int, int] | None = None
    output: str = "inverse"
    frame_numbers: tuple[int, ...] | None = None
    exr_dtype: str = "float"
    exr_compression: str = "zip"
    ply_every: int = DEFAULT_EVERY
    ply_stride: int = DEFAULT_STRIDE
    focal: float | None = None
    fov: float = DEFAULT_FOV

    @classmethod
    def of(cls, out_dir: Path, name: str, info: SourceInfo, unit: int, opts: ExecutionOptions,
           frame_numbers: tuple[int, ...] | None) -> "ExportSettings":
        """What ``opts`` asks for (formats ``opts.save``), for the frames of input ``info``."""
        restore = (info.height, info.width) if opts.restore_res else None
        return cls(out_dir, name, opts.save, info.path, unit, info.fps, opts.colormap, restore, opts.output,
                   frame_numbers, opts.exr_dtype, opts.exr_compression, opts.ply_every, opts.ply_stride, opts.focal,
                   opts.fov)


PARALLEL_FORMATS = ("npy", "exr", "png16")  # chunks written independently, without the RGB frames


def make_writers(settings: ExportSettings, formats: tuple[str, ...], t: int, size: tuple[int, int], lo: float,
                 hi: float, units: StoreUnits | None, tidy: bool = True) -> tuple[dict[str, Path], list]:
    """The exporters of ``formats`` for a ``t``-frame run of output frame ``size`` whose depth spans
    ``[lo, hi]``, and their output paths. ``tidy``: remove what killed runs left (once, by the
    run's own process)."""
    s = settings
    meaning = describe(lo, hi, s.output)
    numbers = describe_numbers(s.frame_numbers, t)
    outputs = {fmt: output_path(s.out_dir, s.name, fmt) for fmt in OUTPUTS if fmt in formats}
    writers = []
    if "npy" in formats:
        writers.append(NpyExporter(outputs["npy"], (t, *size), units, params_key(s.name, t, size, meaning),
                                   s.unit, meaning, tidy=tidy))
    if "npz" in formats:
        writers.append(NpzExporter(outputs["npz"], (t, *size), meaning, units,
                                   params_key(s.name, t, size, meaning, s.fps, numbers), s.fps, s.frame_numbers))
    if "png16" in formats:
        writers.append(Png16Exporter(outputs["png16"], s.name, meaning, units,
                                     params_key(s.name, t, size, meaning, numbers), t, s.frame_numbers, tidy=tidy))
    if "exr" in formats:
        writers.append(ExrExporter(outputs["exr"], s.name, meaning, units,
                                   params_key(s.name, t, size, meaning, numbers, s.exr_dtype, s.exr_compression,
                                              s.fps),
                                   t, s.frame_numbers, s.exr_dtype, s.exr_compression, s.fps, tidy=tidy))
    if "ply" in formats:
        writers.append(PlyExporter(outputs["ply"], s.name, meaning, size, units,
                                   params_key(s.name, t, size, meaning, numbers, s.ply_every, s.ply_stride, s.focal,
                                              s.fov, s.source),
                                   t, s.frame_numbers, s.ply_every, s.ply_stride, s.focal, s.fov))
    if "gray16" in formats:
        writers.append(Gray16Exporter(outputs["gray16"], s.fps, size, meaning, units,
                                      params_key(s.name, t, size, meaning, s.fps)))
    for fmt in ("mp4", "sbs"):
        if fmt in formats:
            writers.append(ColourVideoExporter(outputs[fmt], s.fps, size, lo, hi, s.colormap, fmt == "sbs", units,
                                               params_key(s.name, t, size, lo, hi, s.fps, s.colormap, s.source)))
    return outputs, writers


def depth_chunk(depth, first: int, stop: int, restore_size: tuple[int, int] | None) -> np.ndarray:
    """``float32 [n, H, W]`` depth of frames ``[first, stop)``, resized to ``restore_size`` if given."""
    chunk = np.asarray(depth[first:stop])
    if restore_size:
        chunk = resize(torch.from_numpy(chunk)[:, None], restore_size)[:, 0].numpy()
    return chunk


class TaskUnits(StoreUnits):
    """Export records of a task: passed to the run's process, which writes them."""

    def __init__(self, ctx: UnitContext):
        super().__init__(ctx.store)
        self.ctx = ctx

    def mark_done(self, unit: str) -> None:
        self.ctx.done(STAGE, unit)


def export_chunk(ctx: UnitContext, chunk: tuple[int, int], settings: ExportSettings, lo: float, hi: float) -> None:
    """Task: frames ``[first, stop)`` of the formats that need no RGB and no order (``PARALLEL_FORMATS``)."""
    first, stop = chunk
    depth = ctx.store.array(layout.DEPTH)
    formats = tuple(f for f in settings.formats if f in PARALLEL_FORMATS)
    size = tuple(settings.restore_size or depth.shape[1:])
    _, writers = make_writers(settings, formats, depth.shape[0], size, lo, hi, TaskUnits(ctx), tidy=False)
    todo = [writer for writer in writers if writer.needs(first)]
    values = depth_chunk(depth, first, stop, settings.restore_size)
    for writer in todo:
        writer.write(first, values, None)
    for writer in writers:
        writer.release()


def export(store: RunStore, settings: ExportSettings, rgb: Callable[[], Iterator[FrameView]], progress: Progress,
           executor: Executor | None = None, record: bool = True) -> dict[str, Path]:
    """Write each requested format, then the ``sidecar`` saying what the values are; returns name -> path.

    ``rgb()`` opens the input's frames anew (``FrameView``s of the clip) for outputs that show them.

    ``zarr`` is the run store itself (always relative inverse depth). ``settings.output``:
    ``"inverse"`` (the run's relative inverse depth) or ``"depth"`` (relative depth, see
    ``meaning``), the same in every value output. ``settings.frame_numbers``: numbers of the
    frames (e.g. ``range(1001, 1001 + T)``), ``None`` for 0..T-1.

    Resumable: npy, png16, exr and ply skip units already recorded; npz, gray16 and
    colour videos are redone unless complete; every output appears under its final name
    only when complete. With an ``executor`` of several workers, the chunks of
    ``PARALLEL_FORMATS`` are written by its tasks first; the rest is written here in order.
    ``record=False``: write every output whole and keep no records in the store (a copy elsewhere).
    """
    depth = store.array(layout.DEPTH)
    t = depth.shape[0]
    if t != store.info["num_frames"]:
        raise EngineError(f"run store {store.path} holds {t} frames of depth for a {store.info['num_frames']}-frame "
                          "run: it is damaged; rerun with --overwrite")
    size = tuple(settings.restore_size or depth.shape[1:])
    lo, hi = value_range(depth)
    outputs, writers = make_writers(settings, settings.formats, t, size, lo, hi, StoreUnits(store) if record else None)
    outputs = {"zarr": store.path, **outputs}
    timer = progress.stage(STAGE, t)
    by_tasks: set[int] = set()
    parallel = [w for w in writers if w.fmt in PARALLEL_FORMATS]
    if executor is not None and executor.workers > 1 and parallel:
        pending = [(first, stop) for first, stop in time_chunks(t, settings.unit)
                   if any(w.needs(first) for w in parallel)]
        by_tasks = {first for (first, _), _ in executor.map(export_chunk, pending, settings, lo, hi)}
    needs_rgb = any(w.needs_rgb and not w.complete for w in writers)
    frames = rgb_chunks(rgb(), t, settings.unit, size, settings.source) if needs_rgb else None
    for first, stop in time_chunks(t, settings.unit):
        colour = None if frames is None else next(frames)
        todo = [writer for writer in writers if writer.needs(first)]
        if not todo:
            timer.advance(stop - first, reused=first not in by_tasks)
            continue
        chunk = depth_chunk(depth, first, stop, settings.restore_size)
        for writer in todo:
            writer.write(first, chunk, colour)
        timer.advance(stop - first)
    if frames is not None:
        next(frames, None)  # the input must end where the run does
    for writer in writers:
        writer.close()
    outputs["sidecar"] = output_path(settings.out_dir, settings.name, "sidecar")
    write_sidecar(outputs, writers, settings, t, size, describe(lo, hi, settings.output))
    return outputs


def write_sidecar(outputs: dict[str, Path], writers: list, settings: ExportSettings, t: int,
                  size: tuple[int, int], meaning) -> None:
    """``NAME_depth.json``: what the values are, and where every output is."""
    out_dir = settings.out_dir
    files = {fmt: _relative(path, out_dir) for fmt, path in outputs.items() if fmt != "sidecar"}
    files.update({f"{fmt}_scale": _relative(scale_path(outputs[fmt]), out_dir)
                  for fmt in ("png16", "gray16") if fmt in outputs})
    extra = {"frames": t, "frame_numbers": describe_numbers(settings.frame_numbers, t), "fps": settings.fps,
             "size": {"height": size[0], "width": size[1]}, "outputs": files,
             "run_store": "zarr array 'depth' [T, H, W]: the run's relative inverse depth (inverse_range), "
                          "whatever 'quantity' the other outputs hold"}
    if "ply" in outputs:
        ply = next(w for w in writers if isinstance(w, PlyExporter))
        extra["ply"] = {"every": ply.every, "stride": ply.stride, "focal_px": ply.focal,
                        "principal_point": [size[1] / 2, size[0] / 2], "axes": "OpenCV: x right, y down, z forward",
                        "z": "relative depth (see the ply files' comments)"}
    write_text_atomically(outputs["sidecar"], sidecar_json(meaning, extra))


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def export_shots(store: RunStore, out_dir: Path, name: str, shots: list, rgb: Callable[[], Iterator[FrameView]],
                 fps: float, start: int, source: dict, colormap: str, progress: Progress) -> dict[str, Path]:
    """``shots.json`` (start, end, frames, seconds of every shot) and a contact sheet: the RGB and
    depth thumbnails of each shot's middle frame (one more pass over the input's frames).
    Redone only when the shots, the colormap or the run (its manifest) changed."""
    paths = {fmt: output_path(out_dir, name, fmt) for fmt in ("shots", "contact")}
    depth = store.array(layout.DEPTH)
    unit = layout.export_unit("shots", params_key(name, [(s.start, s.stop) for s in shots], colormap,
                                                  store.manifest), "done")
    if store.is_done(STAGE, unit) and all(p.exists() for p in paths.values()):
        return paths
    progress.note(f"writing {paths['shots'].name} and a contact sheet of {len(shots)} shot(s)")
    write_shots_json(paths["shots"], shots, fps, source, start)
    middles = {s.middle: k for k, s in enumerate(shots)}
    thumbnails: list = [None] * len(shots)
    index = 0
    for frame in rgb():  # views: frames other than the middles are decoded, never converted
        if index in middles:
            thumbnails[middles[index]] = (thumbnail(frame), np.asarray(depth[index]))
        del frame
        if index >= max(middles):
            break
        index += 1
    contact_sheet(paths["contact"], thumbnails, shots, colormap)
    store.mark_done(STAGE, unit)
    return paths

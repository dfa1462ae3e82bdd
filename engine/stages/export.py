"""Export stage: the run's ``depth [T, H, W]`` into the requested output files, shot by shot.

``export_shot`` writes a shot's frames of the per-frame formats (``SHOT_FORMATS``: npy
chunks into its partial file, exr, png16, ply) as soon as the shot's depth is final, in
shot order (one forward pass over the input for ply's colours); the shot's record
(``layout.export_unit("shot", key, ...)``) says it is done for these settings. ``finish``
(once every shot is through) writes the formats that are one stream (npz, gray16, mp4,
sbs), gives npy its final name, writes the sidecar, ``shots.json`` and the contact sheet,
and records the run complete.

Values: each shot has its own unknown scale and shift, so ``--output depth`` converts each
shot with its own range, and 16-bit codes of png16 map each shot's range; the film's
``DepthMeaning`` lists the shots (``parts``). Units (``layout.export_unit``): one per time
chunk of chunked formats and one per finished output; ``key`` digests the output's
parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ...storage import layout
from ...storage.exporters import FRAME_FORMATS, OUTPUTS, output_path, scale_path
from ...storage.exporters.base import DEFAULT_TEMPLATE
from ...storage.exporters.ledger import Ledger, fixed_files
from ...storage.exporters.colour_video import ColourVideoExporter
from ...storage.exporters.exr import ExrExporter
from ...storage.exporters.gray16 import Gray16Exporter
from ...storage.exporters.meaning import DepthMeaning, describe_numbers, describe_parts, sidecar_json
from ...storage.exporters.npy import NpyExporter
from ...storage.exporters.npz import NpzExporter
from ...storage.exporters.ply import DEFAULT_EVERY, DEFAULT_FOV, DEFAULT_STRIDE, PlyExporter
from ...storage.exporters.png16 import Png16Exporter, write_scales
from ...storage.files import write_text_atomically
from ...storage.inputs.source import FrameView
from ...storage.run_store import RunStore
from ...storage.timecode import Timecode
from ..config import ExecutionOptions, RunConfig
from ..errors import EngineError
from ..execution import UnitContext
from ..latents import display_frame, resize
from ..progress import Progress
from ..plan import RunPlan
from ..run_context import RunContext
from ..shots.contact_sheet import PAGE_SHOTS, contact_sheets, page_path, thumbnail
from ..shots.model import Shot
from ..shots.shots_json import write_shots_json

STAGE = layout.EXPORT
SHOT_FORMATS = ("npy", "exr", "png16", "ply")  # written shot by shot, as each shot is final
TASK_FORMATS = ("npy", "exr", "png16")  # chunks a cluster's workers can write (no RGB, no order)


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


class TaskUnits(StoreUnits):
    """Export records of a task: passed to the run's process, which writes them."""

    def __init__(self, ctx: UnitContext):
        super().__init__(ctx.store)
        self.ctx = ctx

    def mark_done(self, unit: str) -> None:
        self.ctx.done(STAGE, unit)


def params_key(*values) -> str:
    """Short digest of an output's parameters: records of other parameters never match."""
    return hashlib.sha256(json.dumps([str(v) for v in values]).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ExportSettings:
    """What to write where: output folder and stem, formats, the input (for RGB), frame rate and
    numbers, and each format's options (see ``export_shot``).

    ``frame_name``: per-frame file names (a template of ``name`` and ``frame``); ``times``:
    each frame's seconds when they stray from a constant rate (videos then keep them);
    ``timecode``: the input's (EXR ``timeCode``, sidecar); ``covered``: the source frame's
    top-left rows x columns that depth shows (``Geometry.covered``; None: all of it).
    """

    out_dir: Path
    name: str
    formats: tuple[str, ...]
    source: str
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
    frame_name: str = DEFAULT_TEMPLATE
    times: tuple[float, ...] | None = None
    timecode: Timecode | None = None
    covered: tuple[int, int] | None = None
    shown_size: tuple[int, int] | None = None  # the source frame's part depth shows, rows x columns
    depth_id: str | None = None  # which depth the outputs hold: a hash of the run store's manifest

    @classmethod
    def of(cls, ctx: RunContext, clip) -> "ExportSettings":
        """What the run's options ask for, for the frames of its ``clip`` (``engine.clip``)."""
        from ..clip import variable_times
        from ..outputs import frame_name

        opts, info = ctx.opts, ctx.source.info
        numbers, times = ctx.store.array(layout.FRAME)[:], ctx.store.array(layout.TIME)[:]
        source_size = (info.height, info.width)
        shown = ctx.plan.geometry.covered(source_size)
        return cls(ctx.out_dir, ctx.name, opts.save, info.path, clip.fps, opts.colormap,
                   shown if opts.restore_res else None, opts.output, tuple(numbers.tolist()), opts.exr_dtype,
                   opts.exr_compression, opts.ply_every, opts.ply_stride, opts.focal, opts.fov,
                   frame_name(opts, info), variable_times(times, clip.fps), info.timecode,
                   None if shown == source_size else shown, shown, depth_id(ctx.store))

    def redirected(self, out_dir: Path, name: str, opts: ExecutionOptions) -> "ExportSettings":
        """These settings writing ``opts.save`` into ``out_dir`` as ``name``, with ``opts``' output options."""
        return dataclasses.replace(self, out_dir=Path(out_dir), name=name, formats=opts.save, colormap=opts.colormap,
                                   restore_size=self.shown_size if opts.restore_res else None, output=opts.output,
                                   exr_dtype=opts.exr_dtype, exr_compression=opts.exr_compression,
                                   ply_every=opts.ply_every, ply_stride=opts.ply_stride, focal=opts.focal,
                                   fov=opts.fov, fps=opts.fps or self.fps,
                                   frame_name=opts.frame_name or self.frame_name)


def depth_id(store: RunStore) -> str:
    """A short hash of ``store``'s manifest (its configuration and input): the same id, the same depth."""
    return hashlib.sha256(json.dumps(store.manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_writers(settings: ExportSettings, formats: tuple[str, ...], t: int, size: tuple[int, int],
                 meaning: DepthMeaning, units: StoreUnits, tidy: bool = True) -> tuple[dict[str, Path], list]:
    """The exporters of ``formats`` for a ``t``-frame run of output frame ``size`` whose values
    ``meaning`` describes (a shot's, or the film's), and their output paths. ``tidy`` (once per run,
    by the run's own process): list the files about to be written in the output folder's ledger
    (stopping at one it did not write), remove listed files of earlier runs they replace and what
    killed runs left. Record keys hold the output's parameters, not the value ranges (those follow
    from the run's depth)."""
    s = settings
    kind = meaning.quantity
    numbers = describe_numbers(s.frame_numbers, t)
    outputs = {fmt: output_path(s.out_dir, s.name, fmt) for fmt in OUTPUTS if fmt in formats}
    ledger = Ledger(s.out_dir) if tidy else None
    if ledger is not None:
        ledger.claim(fixed_files(s.out_dir, s.name, (*formats, "sidecar")))
    frames = dict(tidy=tidy, template=s.frame_name, ledger=ledger)
    timing = hashlib.sha256(json.dumps(s.times).encode()).hexdigest()[:10] if s.times else None
    writers = []
    if "npy" in formats:
        writers.append(NpyExporter(outputs["npy"], (t, *size), units, params_key(s.name, t, size, kind),
                                   8, meaning, tidy=tidy))
    if "npz" in formats:
        writers.append(NpzExporter(outputs["npz"], (t, *size), meaning, units,
                                   params_key(s.name, t, size, kind, s.fps, numbers), s.fps, s.frame_numbers))
    if "png16" in formats:
        writers.append(Png16Exporter(outputs["png16"], s.name, meaning, units,
                                     params_key(s.name, t, size, kind, numbers, s.frame_name), t, s.frame_numbers,
                                     **frames))
    if "exr" in formats:
        writers.append(ExrExporter(outputs["exr"], s.name, meaning, units,
                                   params_key(s.name, t, size, kind, numbers, s.exr_dtype, s.exr_compression,
                                              s.fps, s.frame_name, s.timecode),
                                   t, s.frame_numbers, s.exr_dtype, s.exr_compression, s.fps, timecode=s.timecode,
                                   **frames))
    if "ply" in formats:
        writers.append(PlyExporter(outputs["ply"], s.name, meaning, size, units,
                                   params_key(s.name, t, size, kind, numbers, s.ply_every, s.ply_stride, s.focal,
                                              s.fov, s.source, s.frame_name, s.covered),
                                   t, s.frame_numbers, s.ply_every, s.ply_stride, s.focal, s.fov, **frames))
    if "gray16" in formats:
        writers.append(Gray16Exporter(outputs["gray16"], s.fps, size, meaning, units,
                                      params_key(s.name, t, size, meaning, s.fps, timing), s.times))
    for fmt in ("mp4", "sbs"):
        if fmt in formats:
            lo, hi = meaning.inverse_range
            writers.append(ColourVideoExporter(outputs[fmt], s.fps, size, lo, hi, s.colormap, fmt == "sbs", units,
                                               params_key(s.name, t, size, lo, hi, s.fps, s.colormap, s.source,
                                                          timing, s.covered),
                                               s.times))
    return outputs, writers


def depth_chunk(depth, first: int, stop: int, restore_size: tuple[int, int] | None) -> np.ndarray:
    """``float32 [n, H, W]`` depth of frames ``[first, stop)``, resized to ``restore_size`` if given."""
    chunk = np.asarray(depth[first:stop])
    if restore_size:
        chunk = resize(torch.from_numpy(chunk)[:, None], restore_size)[:, 0].numpy()
    return chunk


class InputFrames:
    """The clip's frames at output size (``display_frame`` of the part ``covered`` by depth), read
    forward: a read before the last one's end opens the input again. The input must still decode
    to the run's ``t`` frames."""

    def __init__(self, open_views: Callable[[], Iterator[FrameView]], t: int, size: tuple[int, int], source: str,
                 covered: tuple[int, int] | None = None):
        self.open_views, self.t, self.size, self.source, self.covered = open_views, t, size, source, covered
        self.frames: Iterator[FrameView] | None = None
        self.position = 0

    def chunk(self, first: int, stop: int) -> np.ndarray:
        """``uint8 [stop - first, *size, 3]``."""
        if self.frames is None or first < self.position:
            self.frames, self.position = self.open_views(), 0
        for _ in islice(self.frames, first - self.position):  # views: decoded, never converted
            pass
        self.position = first
        chunk = []
        for frame in islice(self.frames, stop - first):
            chunk.append(display_frame(frame, self.size, self.covered))
            del frame  # not held while the next frame decodes
        self.position += len(chunk)
        if len(chunk) < stop - first:
            raise EngineError(f"{self.source} now decodes to {self.position} frames, but the run has {self.t}: "
                              "the input changed or is damaged; rerun with --overwrite")
        if self.position == self.t and next(self.frames, None) is not None:
            raise EngineError(f"{self.source} now decodes to more than the run's {self.t} frames: the input changed; "
                              "rerun with --overwrite")
        return np.stack(chunk)


class ExportSession:
    """What the export stage keeps across shots: the settings, the input's frames, whether the
    output folders were tidied in this run."""

    def __init__(self, ctx: RunContext):
        from ..clip import select_clip

        self.store, self.clip = ctx.store, select_clip(ctx.source.info, ctx.cfg)[0]
        self.settings = ExportSettings.of(ctx, self.clip)
        info, opts = ctx.source.info, ctx.opts
        self.t = ctx.plan.num_frames
        self.size = tuple(self.settings.restore_size or ctx.plan.geometry.depth)
        self.formats = tuple(f for f in opts.save if f in SHOT_FORMATS)
        self.key = params_key(self.settings)
        self.frames = InputFrames(lambda: self.clip.views(ctx.source), self.t, self.size, info.path,
                                  self.settings.covered)
        self.tidied = False

    @property
    def depth(self):
        return self.store.array(layout.DEPTH)


def session(ctx: RunContext) -> ExportSession:
    if ctx.exports is None:
        ctx.exports = ExportSession(ctx)
    return ctx.exports


def shot_unit(key: str, shot: Shot) -> str:
    return layout.export_unit("shot", key, layout.chunk_unit(shot.start))


def shot_exported(ctx: RunContext, shot: Shot) -> bool:
    """Whether shot ``shot``'s per-frame outputs of this run's settings are written."""
    return ctx.store.is_done(STAGE, shot_unit(session(ctx).key, shot))


def values_meaning(store: RunStore, cfg: RunConfig, plan: RunPlan, output: str,
                   shots: list[Shot] | None = None) -> DepthMeaning:
    """The meaning of the ``output`` values of ``shots`` (default: all), each shot with its own range:
    that of its final depth, from the records of the stage that wrote it last."""
    from .merge import shot_range
    from .table import final_depth_stage

    stage = final_depth_stage(cfg).name
    return describe_parts([(s.start, s.stop, *shot_range(store, stage, plan, s)) for s in shots or plan.shots],
                          output)


def shot_meaning(ctx: RunContext, shot: Shot) -> DepthMeaning:
    return values_meaning(ctx.store, ctx.cfg, ctx.plan, ctx.opts.output, [shot])


def film_meaning(ctx: RunContext, shots: list[Shot] | None = None) -> DepthMeaning:
    return values_meaning(ctx.store, ctx.cfg, ctx.plan, ctx.opts.output, shots)


def export_shot(ctx: RunContext, shot: Shot) -> None:
    """Write shot ``shot``'s frames of the per-frame formats; record the shot exported."""
    ses = session(ctx)
    timer = ctx.timers[STAGE]
    segments = ctx.plan.segments(shot)
    if ses.formats:
        meaning = shot_meaning(ctx, shot)
        _, writers = make_writers(ses.settings, ses.formats, ses.t, ses.size, meaning, StoreUnits(ctx.store),
                                  tidy=not ses.tidied)
        ses.tidied = True
        by_tasks: set[int] = set()
        parallel = [w for w in writers if w.fmt in TASK_FORMATS]
        if ctx.executor.workers > 1 and parallel:
            pending = [(a, b) for a, b in segments if any(w.needs(a) for w in parallel)]
            by_tasks = {a for (a, _), _ in ctx.executor.map(export_chunk, pending, ses.settings, meaning, ses.t)}
        for a, b in segments:
            todo = [w for w in writers if w.needs(a)]
            if not todo:
                timer.advance(b - a, reused=a not in by_tasks)
                continue
            colour = ses.frames.chunk(a, b) if any(w.needs_rgb for w in todo) else None
            values = depth_chunk(ses.depth, a, b, ses.settings.restore_size)
            for writer in todo:
                writer.write(a, values, colour)
            timer.advance(b - a)
        for writer in writers:
            writer.release()
        if "png16" in ses.formats:
            done = [s for s in ctx.plan.shots[:shot.index + 1]]
            write_scales(output_path(ctx.out_dir, ctx.name, "png16"), film_meaning(ctx, done))
    else:
        timer.advance(shot.num_frames, reused=True)
    ctx.store.mark_done(STAGE, shot_unit(ses.key, shot))


def export_chunk(ctx: UnitContext, chunk: tuple[int, int], settings: ExportSettings, meaning: DepthMeaning,
                 t: int) -> None:
    """Task: frames ``[first, stop)`` of the formats that need no RGB and no order (``TASK_FORMATS``)."""
    first, stop = chunk
    depth = ctx.store.array(layout.DEPTH)
    formats = tuple(f for f in settings.formats if f in TASK_FORMATS)
    size = tuple(settings.restore_size or depth.shape[1:])
    _, writers = make_writers(settings, formats, t, size, meaning, TaskUnits(ctx), tidy=False)
    todo = [writer for writer in writers if writer.needs(first)]
    values = depth_chunk(depth, first, stop, settings.restore_size)
    for writer in todo:
        writer.write(first, values, None)
    for writer in writers:
        writer.release()


def finish(ctx: RunContext, shot: None = None) -> None:
    """Once every shot is through: the stream formats, npy's final name, the 16-bit scales, the
    sidecar, the shots outputs; then the run is recorded complete."""
    ses, plan, store = session(ctx), ctx.plan, ctx.store
    outputs = write_outputs(ses.depth, plan, ses.settings, film_meaning(ctx), ses.frames, StoreUnits(store),
                            ctx.progress)
    outputs = {"zarr": store.path, **outputs}
    if ctx.cfg.shots != "none":
        from ..config import SHOT_MODES

        outputs.update(export_shots(store, ctx.out_dir, ctx.name, plan.shots, lambda: ses.clip.views(ctx.source),
                                    ses.settings.fps, {"method": ctx.cfg.shots if ctx.cfg.shots in SHOT_MODES else "file",
                                                    "threshold": ctx.cfg.shot_threshold}, ctx.opts.colormap,
                                    ctx.progress))
    ctx.outputs = outputs


def write_outputs(depth, plan: RunPlan, settings: ExportSettings, meaning: DepthMeaning, frames: InputFrames,
                  units: StoreUnits | None, progress: Progress) -> dict[str, Path]:
    """Every output of ``settings.formats`` not complete yet (whole streams; chunks not recorded in
    ``units``, every chunk without them), the 16-bit scales and the sidecar; returns name -> path."""
    t, size = plan.num_frames, tuple(settings.restore_size or plan.geometry.depth)
    outputs, writers = make_writers(settings, settings.formats, t, size, meaning, units)
    open_writers = [w for w in writers if not w.complete]  # streams, and any output a user deleted since
    segments = [segment for shot in plan.shots for segment in plan.segments(shot)]
    if any(w.needs(a) for w in open_writers for a, _ in segments):
        timer = progress.stage("export-streams", t, concurrent=True)
        for a, b in segments:
            todo = [w for w in open_writers if w.needs(a)]
            if todo:
                colour = frames.chunk(a, b) if any(w.needs_rgb for w in todo) else None
                values = depth_chunk(depth, a, b, settings.restore_size)
                for writer in todo:
                    writer.write(a, values, colour)
            timer.advance(b - a, reused=not todo)
    for writer in writers:
        writer.close()
    if "png16" in settings.formats:
        write_scales(outputs["png16"], meaning)
    outputs["sidecar"] = output_path(settings.out_dir, settings.name, "sidecar")
    write_sidecar(outputs, writers, settings, t, size, meaning)
    return outputs


def export_copy(store: RunStore, settings: ExportSettings, open_views: Callable[[], Iterator[FrameView]],
                progress: Progress) -> dict[str, Path]:
    """The outputs ``settings`` asks for, written whole from a finished run store into
    ``settings.out_dir`` with no records kept (a copy, e.g. ``DepthResult.save``)."""
    from ..inspection import store_plan

    cfg, plan = store_plan(store)
    meaning = values_meaning(store, cfg, plan, settings.output)
    size = tuple(settings.restore_size or plan.geometry.depth)
    frames = InputFrames(open_views, plan.num_frames, size, settings.source, settings.covered)
    return write_outputs(store.array(layout.DEPTH), plan, settings, meaning, frames, None, progress)


def write_sidecar(outputs: dict[str, Path], writers: list, settings: ExportSettings, t: int,
                  size: tuple[int, int], meaning) -> None:
    """``NAME_depth.json``: what the values are, and where every output is."""
    out_dir = settings.out_dir
    files = {fmt: _relative(path, out_dir) for fmt, path in outputs.items() if fmt != "sidecar"}
    files.update({f"{fmt}_scale": _relative(scale_path(outputs[fmt]), out_dir)
                  for fmt in ("png16", "gray16") if fmt in outputs})
    earlier, other = earlier_outputs(outputs["sidecar"], files, settings, meaning)
    files.update(earlier)
    extra = {"frames": t, "frame_numbers": describe_numbers(settings.frame_numbers, t), "fps": settings.fps,
             "size": {"height": size[0], "width": size[1]}, "outputs": files, "depth_id": settings.depth_id,
             "run_store": "zarr array 'depth' [T, H, W]: the run's relative inverse depth (inverse_range), "
                          "whatever 'quantity' the other outputs hold"}
    if any(fmt in outputs for fmt in FRAME_FORMATS):
        extra["frame_name"] = settings.frame_name
    if settings.timecode is not None:
        numbers = settings.frame_numbers or range(t)
        extra["timecode"] = {"first_frame": settings.timecode.at(numbers[0]), "source": settings.timecode.to_dict()}
    if settings.times is not None:
        extra["times"] = {"variable_rate": True, "first": settings.times[0], "last": settings.times[-1],
                          "note": "output videos carry each frame's time stamp from the source"}
    if settings.covered is not None:
        extra["covers"] = {"rows": settings.covered[0], "columns": settings.covered[1],
                           "note": "depth shows the source frame's top-left rows x columns (--reproduce size rule)"}
    if "ply" in outputs:
        ply = next(w for w in writers if isinstance(w, PlyExporter))
        extra["ply"] = {"every": ply.every, "stride": ply.stride, "focal_px": ply.focal,
                        "principal_point": [size[1] / 2, size[0] / 2], "axes": "OpenCV: x right, y down, z forward",
                        "z": "relative depth (see the ply files' comments)"}
    if other:
        extra["other_outputs"] = {"files": other, "note": "written here by an earlier run of other depth or value "
                                  "meaning (other options): this sidecar does not describe them"}
    write_text_atomically(outputs["sidecar"], sidecar_json(meaning, extra))


def earlier_outputs(sidecar: Path, files: dict[str, str], settings: ExportSettings,
                    meaning: DepthMeaning) -> tuple[dict[str, str], dict[str, str]]:
    """The outputs an earlier sidecar at ``sidecar`` lists that this run did not write and that are
    still there: ``(same, other)``, ``same`` when they hold this depth with this meaning of values
    (so this sidecar describes them too), else ``other``."""
    try:
        before = json.loads(sidecar.read_text())
        listed = dict(before.get("outputs", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return {}, {}
    present = {fmt: rel for fmt, rel in listed.items() if isinstance(rel, str) and fmt not in files
               and rel not in files.values() and (settings.out_dir / rel).exists()}
    now = json.loads(json.dumps(meaning.to_dict()))  # as the sidecar holds it (tuples as lists)
    same = (settings.depth_id is not None and before.get("depth_id") == settings.depth_id
            and all(before.get(key) == value for key, value in now.items()))
    return (present, {}) if same else ({}, present)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def export_shots(store: RunStore, out_dir: Path, name: str, shots: list, rgb: Callable[[], Iterator[FrameView]],
                 fps: float, source: dict, colormap: str, progress: Progress) -> dict[str, Path]:
    """``shots.json`` (start, end, frames, the input's frame numbers and seconds of every shot,
    from the store's ``frame`` and ``time``) and a contact sheet: the RGB and depth thumbnails
    of each shot's middle frame (one more pass over the input's frames), in pages of
    ``contact_sheet.PAGE_SHOTS`` shots. Redone only when the shots, the colormap or the run (its
    manifest) changed; pages an earlier sheet of more shots wrote beyond the new ones are removed."""
    paths = {fmt: output_path(out_dir, name, fmt) for fmt in ("shots", "contact")}
    depth = store.array(layout.DEPTH)
    key = params_key(name, [(s.start, s.stop) for s in shots], colormap, store.manifest)
    unit = layout.export_unit("shots", key, "done")
    if store.is_done(STAGE, unit) and all(p.exists() for p in paths.values()):
        return paths
    Ledger(out_dir).claim([paths["shots"], *(page_path(paths["contact"], page)
                                             for page in range(-(-len(shots) // PAGE_SHOTS)))])
    progress.note(f"writing {paths['shots'].name} and a contact sheet of {len(shots)} shot(s)")
    write_shots_json(paths["shots"], shots, fps, source, store.array(layout.FRAME)[:], store.array(layout.TIME)[:])
    middles = {s.middle: s for s in shots}

    def tiles():  # views: frames other than the middles are decoded, never converted
        for index, frame in enumerate(rgb()):
            if index in middles:
                yield middles[index], thumbnail(frame), thumbnail(np.asarray(depth[index]))
            del frame
            if index >= max(middles):
                return

    pages = contact_sheets(paths["contact"], tiles(), colormap)
    for old, record in store.done_units(STAGE).items():  # an earlier sheet's records and extra pages
        if old.startswith("shots-") and old != unit:
            for page in range(len(pages), int(record.get("pages", 1))):
                page_path(paths["contact"], page).unlink(missing_ok=True)
            store.clear_unit(STAGE, old)
    store.mark_done(STAGE, unit, {"pages": len(pages)})
    return paths

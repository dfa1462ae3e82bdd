"""The RollingDepth pipeline, top to bottom: ingest -> snippets -> coalign -> merge -> refine -> export.

Every stage commits to the run store ``OUTDIR/run.zarr`` and skips units already done,
so rerunning the same command resumes.
"""

from __future__ import annotations

import errno
import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

import numpy as np

from .. import __version__
from ..storage import layout
from ..storage.inputs import FrameSource, FrameView, open_input
from ..storage.lock import RunLock, StoreLocked
from ..storage.run_store import DamagedData, DamagedStore, RunStore, StoreMismatch
from .allocator import return_free_memory
from .config import SHOT_MODES, ExecutionOptions, RunConfig
from .errors import EngineError
from .execution import Executor, LocalExecutor, torch_threads
from .model import Model, load_model
from .plan import frame_unit, make_plan
from .progress import Progress
from .progress.input_warnings import input_warnings
from .repair import repair
from .shots.cut_lists import read_cut_list
from .shots.detector import CutDetector
from .shots.model import Shot
from .stages.coalign import coalign
from .stages.export import ExportSettings, export, export_shots
from .stages.ingest import frame_geometry, ingest
from .stages.merge import merge, normalize
from .stages.refine import refine
from .stages.snippets import DeviceTimer, infer_snippets

RUN_REPAIRS = 3  # damaged data found in one run more often than this: the disk is failing


@dataclass
class RunResult:
    """What a run produced: output paths, frame count, per-stage timings, the time spent in this
    run and in all runs of the store (``runs`` of them), what the input's decoding met, and the
    export settings."""

    store: Path
    outputs: dict[str, Path]
    num_frames: int
    seconds: float
    stages: list = field(default_factory=list)
    cumulative_seconds: float = 0.0
    runs: int = 1
    warnings: list[str] = field(default_factory=list)
    export_settings: ExportSettings | None = None  # how the outputs were written (``DepthResult.save`` reuses it)


@dataclass
class Run:
    """One run in progress: the store, the input, the settings and where units are computed."""

    store: RunStore
    source: FrameSource
    name: str
    out_dir: Path
    cfg: RunConfig
    opts: ExecutionOptions
    executor: Executor
    progress: Progress
    device_timer: DeviceTimer | None
    on_shot: Callable[[Shot], None] | None = None


def output_name(path: str, source: FrameSource) -> str:
    """The stem of output files: a video's name, or an image sequence's folder or pattern stem."""
    if source.info.kind == "video":
        return Path(path).stem
    p = Path(path)
    if p.is_dir():
        return p.resolve().name
    stem = p.name.split("%")[0].split("#")[0].split("*")[0].rstrip("._-")
    return stem or p.parent.resolve().name


def build_manifest(cfg: RunConfig, path: str, source: FrameSource, checkpoint: dict) -> dict:
    """What determines the run's bytes: engine version, config and its hash, input content,
    weights, and a cut list's content."""
    manifest = {"engine": __version__, "config": cfg.to_dict(), "config_hash": cfg.digest(),
                "input": {"name": Path(path).name, "kind": source.info.kind, "identity": source.identity()},
                "checkpoint": checkpoint}
    if cfg.shots not in SHOT_MODES:
        manifest["cut_list"] = hashlib.sha256(Path(cfg.shots).read_bytes()).hexdigest()
    return manifest


WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (size limit)",
                errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
                errno.EIO: "input/output error"}


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what happened and to which file."""
    what = WRITE_ERRNOS.get(exc.errno) or exc.strerror or str(exc)
    return f"{what} ({exc.filename})" if exc.filename else what


@contextmanager
def write_errors_as_engine_errors(store_path: Path):
    """Turn OSError (disk full, size limit, quota, I/O) into one resumable-run message."""
    try:
        yield
    except OSError as exc:
        raise EngineError(f"cannot write to run store {store_path}: {describe_os_error(exc)}; the store is "
                          f"left resumable: free space and rerun the same command to continue") from None


@contextmanager
def executor_for(cfg: RunConfig, opts: ExecutionOptions, model: Model | None, cluster) -> Iterator[Executor]:
    """Where this run's units are computed: here with ``model`` (loaded if None), or as tasks on
    ``cluster`` (a ``cluster.clusters.Cluster``), or on one opened for ``opts.workers`` /
    ``opts.scheduler`` (closed after the run)."""
    if cluster is None and not (opts.workers or opts.scheduler):
        model = model or load_model(cfg.checkpoint, opts.device, cfg.dtype, opts.attention)
        with torch_threads(opts.threads):
            yield LocalExecutor(model.as_published() if cfg.reproduce else model)
        return
    from .cluster.clusters import open_cluster
    from .cluster.executor import ClusterExecutor, ModelSpec

    def spec(opened) -> ModelSpec:
        return ModelSpec(cfg.checkpoint, opts.device, cfg.dtype, opts.attention, cfg.reproduce,
                         opts.threads or opened.threads, opened.pin_gpu)

    if cluster is not None:
        yield ClusterExecutor(cluster, spec(cluster))
        return
    with open_cluster(opts.workers, opts.scheduler, opts.device) as opened:
        yield ClusterExecutor(opened, spec(opened))


def process_video(video: str | FrameSource, out_dir: str | Path, cfg: RunConfig, opts: ExecutionOptions,
                  model: Model | None = None, device_timer: DeviceTimer | None = None,
                  progress_stream: IO[str] | None = None, cluster=None,
                  on_shot: Callable[[Shot], None] | None = None, progress: Progress | None = None) -> RunResult:
    """Run every stage on ``video`` (a video file or an image sequence, or an opened ``FrameSource``)
    into ``out_dir``.

    The input is probed and the model loaded before the run store is touched, so a failed
    start leaves nothing to clean up. One process per store (``run.zarr.lock``); an OSError
    while writing becomes an EngineError saying the run can be resumed. ``model``: an already
    loaded model (else loaded from ``cfg.checkpoint``); ``device_timer``: times the snippet
    stage's device work (benchmarks); ``progress_stream``: where progress goes (default stderr);
    ``cluster``: an open ``cluster.clusters.Cluster`` whose workers compute the units (with
    ``opts.workers`` or ``opts.scheduler`` one is opened for this run). ``on_shot(shot)`` is called
    (in this thread) for every shot once its depth in the store is final, before the exports;
    ``progress``: an open ``Progress`` to report to (else one made for ``opts.progress``).
    """
    started = time.perf_counter()
    progress = progress or Progress(opts.progress, stream=progress_stream)
    with progress, input_warnings(progress):
        source = video if isinstance(video, FrameSource) else open_input(video, stream=cfg.stream, fps=opts.fps)
        with executor_for(cfg, opts, model, cluster) as executor:
            if not isinstance(executor, LocalExecutor):
                progress.note(f"units run as tasks on {executor.cluster.where}")
            return run_locked(source.info.path, Path(out_dir), cfg, opts, source, executor, progress, device_timer,
                              started, on_shot)


def run_locked(video: str, out_dir: Path, cfg: RunConfig, opts: ExecutionOptions, source: FrameSource,
               executor: Executor, progress: Progress, device_timer: DeviceTimer | None, started: float,
               on_shot: Callable[[Shot], None] | None = None) -> RunResult:
    """Take the run lock, create or resume the store, run the stages; the store records the time spent."""
    store_path = out_dir / layout.STORE_NAME
    with write_errors_as_engine_errors(store_path):
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(store_path)
        try:
            lock.acquire()
        except StoreLocked as exc:
            raise EngineError(str(exc)) from None
    try:
        if lock.took_over:
            progress.note(f"took over the lock of process {lock.took_over.get('pid')} "
                          f"(no longer running) on {store_path}")
        with write_errors_as_engine_errors(store_path):
            manifest = build_manifest(cfg, video, source, executor.facts.identity)
            try:
                store = RunStore.create_or_resume(store_path, manifest, overwrite=opts.overwrite)
            except (StoreMismatch, DamagedStore) as exc:
                raise EngineError(str(exc)) from None
            store.update_info(input_stat=source.stat(), checkpoint_path=cfg.checkpoint)
            executor.bind(store)
            run = Run(store, source, output_name(video, source), out_dir, cfg, opts, executor, progress,
                      device_timer, on_shot)
            try:
                result = repairing(run)
            finally:
                seconds = time.perf_counter() - started
                store.update_info(seconds=store.info.get("seconds", 0.0) + seconds,
                                  runs=store.info.get("runs", 0) + 1)
            result.seconds, result.cumulative_seconds, result.runs = seconds, store.info["seconds"], \
                store.info["runs"]
            return result
    finally:
        lock.release()


def repairing(run: Run) -> RunResult:
    """``run_stages``, recomputing what damaged data (a failed checksum) invalidates."""
    for _ in range(RUN_REPAIRS):
        try:
            return run_stages(run)
        except DamagedData as damage:
            run.progress.warning(f"damaged data in {run.store.path}: {damage}; {repair(run.store, damage)}")
    raise EngineError(f"run store {run.store.path} keeps returning damaged data: check the disk, then rerun "
                      "(or --overwrite)")


def run_stages(run: Run) -> RunResult:
    """The algorithm, stage after stage; each skips the units the store holds already."""
    store, cfg, opts, executor, progress = run.store, run.cfg, run.opts, run.executor, run.progress
    info = run.source.info
    for record in store.withdraw_unreadable_records():
        progress.warning(f"damaged record {record} in {store.path}: its units are recomputed")
    store.check_metadata()
    geometry = frame_geometry((info.height, info.width), cfg.res, cfg.geometry, progress)
    if "frame_unit" not in store.info:  # ingest's units: fixed before the first is written
        store.update_info(frame_unit=frame_unit(geometry, opts.unit_frames))
    detector = CutDetector(threshold=cfg.shot_threshold, fps=info.fps) if cfg.shots == "auto" else None
    frames = run.source.views(cfg.start, cfg.frames)
    num_frames = ingest(store, executor, detected(frames, detector) if detector else frames, clip_length(info, cfg),
                        (info.height, info.width), geometry, store.info["frame_unit"], progress)
    return_free_memory()  # what decoding held (a large input's tables and buffers)
    if not num_frames:
        raise EngineError(f"no frames to process in {info.path} (start {cfg.start} is past the end?)")
    warnings = record_decoding(run, geometry.frame)
    if "cuts" not in store.info:
        store.update_info(cuts=find_cuts(cfg, detector, info.fps, num_frames))
    store.compact(layout.INGEST)
    if not store.has(layout.TIME):
        write_coordinates(store, frame_numbers(info, cfg, num_frames), info.fps)

    facts = executor.facts
    plan, new = make_plan(store.info, cfg, opts, num_frames, geometry, facts.itemsize, facts.free_memory,
                          facts.device_type, run.out_dir)
    store.update_info(**new)
    for note in plan.notes:
        progress.note(note)
    if len(plan.shots) > 1:
        progress.note(f"{len(plan.shots)} shots: cuts at frames {', '.join(map(str, store.info['cuts'][:20]))}"
                      f"{' ...' if len(plan.shots) > 21 else ''}")
    minima = infer_snippets(store, executor, plan, cfg.seed, progress, run.device_timer)
    store.compact(layout.SNIPPETS)
    if not cfg.refine_steps:
        release(run, layout.RGB_LATENTS)

    scales, shifts = coalign(store, plan, minima, cfg.coalign, opts.coalign_memory, progress, cfg.exact_dtype)
    store.compact(layout.COALIGN)
    merge(store, plan, executor, scales, shifts, minima, progress, cfg.exact_dtype)
    store.compact(layout.MERGE)
    release(run, *(name(j) for j, rows in enumerate(plan.series_rows) if rows
                   for name in (layout.snippet_scratch, layout.snippet_samples)))
    normalize(store, plan, executor, progress, cfg.exact_dtype)
    store.compact(layout.NORMALIZE)
    if cfg.refine_steps:
        refine(store, executor, plan, cfg.seed, progress, cfg.exact_dtype)
        for stage in (layout.REFINE_ENCODE, layout.REFINE, layout.REFINE_DECODE):
            store.compact(stage)
        release(run, layout.RGB_LATENTS, layout.refine_latents(0), layout.refine_latents(1))
    if run.on_shot is not None:  # every shot's depth is final
        for shot in plan.shots:
            run.on_shot(shot)

    store.clear_unit(layout.COMPLETE, layout.COMPLETE_UNIT)  # rewritten below, once every output is complete again
    numbers = tuple(store.array(layout.FRAME)[:].tolist()) if info.frame_numbers else None
    settings = ExportSettings.of(run.out_dir, run.name, info, plan.frame_unit, opts, numbers)
    outputs = export(store, settings, lambda: run.source.views(cfg.start, cfg.frames), progress, executor)
    return_free_memory()
    if cfg.shots != "none":
        outputs.update(export_shots(store, run.out_dir, run.name, plan.shots,
                                    lambda: run.source.views(cfg.start, cfg.frames), info.fps, cfg.start,
                                    {"method": cfg.shots if cfg.shots in SHOT_MODES else "file",
                                     "threshold": cfg.shot_threshold}, opts.colormap, progress))
    store.compact(layout.EXPORT)
    store.mark_done(layout.COMPLETE, layout.COMPLETE_UNIT,
                    {"frames": num_frames, "outputs": {k: str(v) for k, v in outputs.items()},
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return RunResult(store=store.path, outputs=outputs, num_frames=num_frames, seconds=0.0,
                     stages=[stage.record() for stage in progress.stages], warnings=warnings,
                     export_settings=settings)


def detected(frames: Iterator[FrameView], detector: CutDetector) -> Iterator[FrameView]:
    """``frames``, each shown to the cut detector on its way to ingest (no second decode)."""
    index = 0
    for frame in frames:
        detector.feed(index, frame)
        yield frame
        del frame  # not held while the next frame decodes
        index += 1


def find_cuts(cfg: RunConfig, detector: CutDetector | None, fps: float, num_frames: int) -> list[int]:
    """The clip's cuts (frame numbers from its first frame): detected, read from a cut list, or none."""
    if detector is not None:
        return detector.cuts()
    if cfg.shots == "none":
        return []
    try:
        return read_cut_list(cfg.shots, fps, start=cfg.start, num_frames=num_frames)
    except ValueError as exc:
        raise EngineError(str(exc)) from None


def clip_length(info, cfg: RunConfig) -> int:
    """The clip's frame count as far as the input announces it (0 = unknown)."""
    available = max(info.frames_estimate - cfg.start, 0)
    if cfg.frames is None:
        return available
    return min(cfg.frames, available) if info.frames_estimate else cfg.frames


def frame_numbers(info, cfg: RunConfig, num_frames: int) -> np.ndarray:
    """Each processed frame's number: an image sequence's own, else its index in the input."""
    if info.frame_numbers:
        return np.asarray(info.frame_numbers[cfg.start:cfg.start + num_frames])
    return cfg.start + np.arange(num_frames)


def write_coordinates(store: RunStore, numbers: np.ndarray, fps: float) -> None:
    """The ``frame`` numbers and ``time`` (seconds) of every processed frame: coordinates for xarray."""
    store.write_whole(layout.FRAME, numbers.astype(np.int64), ("frame",))
    store.write_whole(layout.TIME, np.arange(len(numbers)) / fps, ("frame",), {"units": "s"})


def record_decoding(run: Run, size: tuple[int, int]) -> list[str]:
    """What the decoder could not read or had to conceal: kept in the store, said once per run;
    returns the lines."""
    report = run.source.report
    if report.decoded:  # decoded in this run: its report is the truth
        problems = [f"{run.source.info.path}: {problem}" for problem in report.problems()]
        if report.size_changes:
            problems.append(f"{run.source.info.path}: frames of another size are fitted into {size[0]}x{size[1]} "
                            "with their aspect kept (black bars)")
        run.store.update_info(decoding={"problems": problems, "dropped": report.dropped,
                                        "concealed": report.concealed,
                                        "size_changes": [[i, list(s)] for i, s in report.size_changes]})
    problems = run.store.info.get("decoding", {}).get("problems", [])
    for problem in problems:
        run.progress.warning(problem)
    return problems


def release(run: Run, *names: str) -> None:
    """Free intermediate arrays whose consumers are done (kept with ``--keep-intermediates``)."""
    if not run.opts.keep_intermediates:
        run.store.release(*names)

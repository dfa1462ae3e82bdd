"""The RollingDepth pipeline, top to bottom: ingest the input, plan, then every shot through its stages.

Ingest decodes the input once (finding the cuts on the way) and encodes its frames; the
plan fixes shots, snippet batches and scratch; the runner then takes shot after shot
through snippets, co-alignment, merge, normalization, refinement and per-frame exports
(``stages/table.py`` declares them), and ``finish`` writes what needs every shot. Every
stage commits to the run store ``OUTDIR/run.zarr`` and skips units already done, so
rerunning the same command resumes.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

import numpy as np

from .. import __version__
from ..storage import layout
from ..storage.exporters.ledger import OutputConflict
from ..storage.inputs import FrameSource, FrameView, open_input
from ..storage.lock import RunLock, StoreLocked
from ..storage.run_store import DamagedData, DamagedStore, RunStore, StoreMismatch
from .allocator import return_free_memory
from .clip import recording_times, select_clip
from .config import SHOT_MODES, ExecutionOptions, RunConfig
from .errors import EngineError, describe_os_error, write_remedy
from .execution import Executor, LocalExecutor, torch_threads
from .facts import RunFacts
from .model import Model, load_model
from .plan import frame_unit, make_plan, plan_choices
from .progress import Progress
from .progress.input_warnings import input_warnings
from .repair import repair
from .outputs import check_run_outputs, output_name
from .run_context import RunContext
from .runner import Runner
from .shots.cut_lists import CutPoint, clip_cuts, outside_note, read_cut_list
from .shots.detector import CutDetector
from .shots.model import Shot
from .stages import table
from .stages.export import ExportSettings, finish
from .stages.ingest import frame_geometry, ingest
from .stages.snippets import DeviceTimer, SnippetStream

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




def build_manifest(cfg: RunConfig, path: str, source: FrameSource, checkpoint: dict) -> dict:
    """What determines the run's bytes: engine version, config and its hash, input content, the
    frames read (``clip``: stream, first position, stride, count), weights, and a cut list's content."""
    manifest = {"engine": __version__, "config": cfg.to_dict(), "config_hash": cfg.digest(),
                "input": {"name": Path(path).name, "kind": source.info.kind, "identity": source.identity()},
                "clip": select_clip(source.info, cfg)[0].to_dict(), "checkpoint": checkpoint}
    if cfg.shots not in SHOT_MODES:
        manifest["cut_list"] = hashlib.sha256(Path(cfg.shots).read_bytes()).hexdigest()
    return manifest


@contextmanager
def write_errors_as_engine_errors(store_path: Path):
    """Turn OSError (disk full, size limit, quota, I/O) into one resumable-run message."""
    try:
        yield
    except OSError as exc:
        raise EngineError(f"cannot write to run store {store_path}: {describe_os_error(exc)}; "
                          f"{write_remedy(exc)}") from None


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
        yield ClusterExecutor(cluster, spec(cluster), every_worker=False)
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
    ``opts.workers`` or ``opts.scheduler`` one is opened for this run); ``on_shot(shot)``: called
    (on the run's thread) when a shot's depth in the store is final, in shot order mostly
    (shots finished in an earlier run first); ``progress``: an open ``Progress`` to report to
    (else one made for ``opts.progress``).
    """
    started = time.perf_counter()
    progress = progress or Progress(opts.progress, stream=progress_stream)
    with progress, input_warnings(progress):
        source = video if isinstance(video, FrameSource) else open_input(video, stream=cfg.stream, fps=opts.fps)
        cut_points(cfg, source.info.fps)  # a typo is said before any work, not after the ingest
        starting = time.perf_counter()
        with executor_for(cfg, opts, model, cluster) as executor:
            if not isinstance(executor, LocalExecutor):
                startup = "" if cluster is not None else \
                    f": started and the model loaded on every worker in {time.perf_counter() - starting:.1f} s"
                progress.note(f"units run as tasks on {executor.cluster.where}{startup}")
            return run_locked(source.info.path, Path(out_dir), cfg, opts, source, executor, progress, device_timer,
                              started, on_shot)


def run_locked(video: str, out_dir: Path, cfg: RunConfig, opts: ExecutionOptions, source: FrameSource,
               executor: Executor, progress: Progress, device_timer: DeviceTimer | None, started: float,
               on_shot: Callable[[Shot], None] | None = None) -> RunResult:
    """Take the run lock, create or resume the store, run the stages; the store records the time spent."""
    store_path = out_dir / layout.STORE_NAME
    select_clip(source.info, cfg)  # a --start outside the input is said before anything is written
    check_run_outputs(source, out_dir, output_name(video, source), cfg, opts)
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
            facts = RunFacts.read(store).record(store, input_stat=source.stat(), checkpoint_path=cfg.checkpoint)
            executor.bind(store)
            ctx = RunContext(store, source, cfg, opts, executor, progress, out_dir, output_name(video, source), facts,
                             device_timer, on_shot)
            try:
                result = repairing(ctx)
            except OutputConflict as exc:
                raise EngineError(str(exc)) from None
            finally:
                seconds = time.perf_counter() - started
                facts = RunFacts.read(store)
                facts = facts.record(store, seconds=facts.seconds + seconds, runs=facts.runs + 1)
            result.seconds, result.cumulative_seconds, result.runs = seconds, facts.seconds, facts.runs
            return result
    finally:
        lock.release()


def repairing(ctx: RunContext) -> RunResult:
    """``run_stages``, recomputing what damaged data (a failed checksum) invalidates."""
    for _ in range(RUN_REPAIRS):
        try:
            return run_stages(ctx)
        except DamagedData as damage:
            ctx.progress.warning(f"damaged data in {ctx.store.path}: {damage}; {repair(ctx, damage)}")
            ctx.facts, ctx.exports = RunFacts.read(ctx.store), None
    raise EngineError(f"run store {ctx.store.path} keeps returning damaged data: check the disk, then rerun "
                      "(or --overwrite)")


def run_stages(ctx: RunContext) -> RunResult:
    """The algorithm: ingest, plan, every shot through its stages, finish. Units the store holds are skipped."""
    store, cfg, opts, progress = ctx.store, ctx.cfg, ctx.opts, ctx.progress
    info = ctx.source.info
    for record in store.withdraw_unreadable_records():
        progress.warning(f"damaged record {record} in {store.path}: its units are recomputed")
    store.check_metadata()
    clip, notes = select_clip(info, cfg)
    for note in (info.choice, *notes):
        if note:
            progress.note(note)
    points = cut_points(cfg, info.fps)  # a bad cut list is said before the work
    geometry = frame_geometry((info.height, info.width), cfg.res, cfg.geometry, progress)
    if ctx.facts.frame_unit is None:  # ingest's units: fixed before the first is written
        ctx.record(frame_unit=frame_unit(geometry, opts.unit_frames), frames_announced=clip.expected(info) or None)
    detector = CutDetector(threshold=cfg.shot_threshold, fps=clip.fps) if cfg.shots == "auto" else None
    stamps: list[float | None] = []
    frames = recording_times(clip.views(ctx.source), stamps)
    num_frames = ingest(ctx, detected(frames, detector) if detector else frames, clip.expected(info),
                        (info.height, info.width), geometry)
    return_free_memory()  # what decoding held (a large input's tables and buffers)
    if not num_frames:
        raise EngineError(f"no frames to process in {info.path} (start {cfg.start} is past the end?)")
    warnings = record_decoding(ctx, geometry.frame)
    if not store.has(layout.TIME):
        numbers = clip.numbers(info, num_frames)
        write_coordinates(store, numbers, clip.times(ctx.source, numbers, stamps))
    if ctx.facts.cuts is None:
        numbers, times = store.array(layout.FRAME)[:], store.array(layout.TIME)[:]
        ctx.record(cuts=find_cuts(cfg, detector, points, info, numbers, times, progress))
    store.compact(layout.INGEST)

    facts = ctx.executor.facts
    ctx.plan = plan = make_plan(ctx.facts, cfg, opts, num_frames, geometry, facts.itemsize, facts.free_memory,
                                facts.device_type, ctx.out_dir)
    if ctx.facts.plan is None:
        ctx.record(plan=plan_choices(plan), notes=plan.notes)
    for note in plan.notes:
        progress.note(note)
    if len(plan.shots) > 1:
        progress.note(f"{len(plan.shots)} shots: cuts at frames {', '.join(map(str, ctx.facts.cuts[:20]))}"
                      f"{' ...' if len(plan.shots) > 21 else ''}")
    latent = sum(kind == "latent" for kind in plan.scratch)
    if latent:
        progress.note(f"{latent} shot(s) too long for the {plan.scratch_budget / 2**30:.1f} GiB scratch budget keep "
                      "snippet latents: one more VAE decode per snippet frame (--scratch-budget raises it)")
    store.clear_unit(layout.COMPLETE, layout.COMPLETE_UNIT)  # written again once every output is complete
    start_timers(ctx)
    ctx.stream = SnippetStream(store, plan, ctx.executor, opts.unit_seconds, ctx.timers[layout.SNIPPETS])
    threaded = ctx.executor.facts.device_type == "cuda" or not isinstance(ctx.executor, LocalExecutor)
    Runner(ctx, threaded_host=threaded or opts.host_thread).run()
    for stage in table.STAGES:
        store.compact(stage.name)
    ctx.release(layout.SNIPPET_SCRATCH, layout.RGB_LATENTS, layout.refine_latents(0), layout.refine_latents(1))
    finish(ctx)
    return_free_memory()
    store.compact(layout.EXPORT)
    store.mark_done(layout.COMPLETE, layout.COMPLETE_UNIT,
                    {"frames": num_frames, "outputs": {k: str(v) for k, v in ctx.outputs.items()},
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return RunResult(store=store.path, outputs=ctx.outputs, num_frames=num_frames, seconds=0.0,
                     stages=[stage.record() for stage in progress.stages], warnings=warnings,
                     export_settings=ctx.exports.settings)


def start_timers(ctx: RunContext) -> None:
    """One timer per stage of the shot phase (they run side by side) and one counting finished shots."""
    plan = ctx.plan
    ctx.timers[layout.SNIPPETS] = ctx.progress.stage(layout.SNIPPETS, plan.snippets, unit="snippets", concurrent=True)
    for stage in table.shot_stages(ctx.cfg):
        if stage.name == layout.COALIGN:
            ctx.timers[stage.name] = ctx.progress.stage(stage.name, plan.snippets, unit="snippets", concurrent=True)
        else:
            steps = plan.refine_steps if stage.name == layout.REFINE else 1
            ctx.timers[stage.name] = ctx.progress.stage(stage.name, steps * plan.num_frames, concurrent=True)
    ctx.timers["shots"] = ctx.progress.stage("shots", len(plan.shots), unit="shots", concurrent=True)


def detected(frames: Iterator[FrameView], detector: CutDetector) -> Iterator[FrameView]:
    """``frames``, each shown to the cut detector on its way to ingest (no second decode)."""
    index = 0
    for frame in frames:
        detector.feed(index, frame)
        yield frame
        del frame  # not held while the next frame decodes
        index += 1


def cut_points(cfg: RunConfig, fps: float) -> list[CutPoint] | None:
    """The boundaries of ``cfg.shots``' cut list (None without one); EngineError naming file and line."""
    if cfg.shots in SHOT_MODES:
        return None
    try:
        return read_cut_list(cfg.shots, fps)
    except ValueError as exc:
        raise EngineError(str(exc)) from None


def find_cuts(cfg: RunConfig, detector: CutDetector | None, points: list[CutPoint] | None, info,
              numbers: np.ndarray, times: np.ndarray, progress: Progress) -> list[int]:
    """The clip's cuts (positions from its first frame): detected, placed from a cut list's
    ``points`` (a warning names those outside the clip), or none."""
    if detector is not None:
        return detector.cuts()
    if points is None:
        return []
    first_number = info.frame_numbers[0] if info.frame_numbers else 0
    cuts, outside = clip_cuts(points, numbers, times, info.fps, first_number, info.timecode)
    if outside:
        progress.warning(outside_note(cfg.shots, outside, len(points), numbers, info.timecode))
    return cuts


def write_coordinates(store: RunStore, numbers: np.ndarray, times: np.ndarray) -> None:
    """The ``frame`` numbers (the input's) and ``time`` (seconds from the input's first frame) of
    every processed frame: coordinates for xarray."""
    store.write_whole(layout.FRAME, numbers.astype(np.int64), ("frame",))
    store.write_whole(layout.TIME, times.astype(np.float64), ("frame",), {"units": "s"})


def record_decoding(ctx: RunContext, size: tuple[int, int]) -> list[str]:
    """What the decoder could not read or had to conceal: kept in the store, said once per run;
    returns the lines."""
    report = ctx.source.report
    if report.decoded:  # decoded in this run: its report is the truth
        problems = [f"{ctx.source.info.path}: {problem}" for problem in report.problems()]
        if report.size_changes:
            problems.append(f"{ctx.source.info.path}: frames of another size are fitted into {size[0]}x{size[1]} "
                            "with their aspect kept (black bars)")
        ctx.record(decoding={"problems": problems, "dropped": report.dropped, "concealed": report.concealed,
                             "size_changes": [[i, list(s)] for i, s in report.size_changes]})
    problems = (ctx.facts.decoding or {}).get("problems", [])
    for problem in problems:
        ctx.progress.warning(problem)
    return problems

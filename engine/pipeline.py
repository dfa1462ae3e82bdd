"""The RollingDepth pipeline, top to bottom: ingest -> snippets -> coalign -> merge -> refine -> export.

Every stage commits to the run store ``OUTDIR/run.zarr`` and skips units already done,
so rerunning the same command resumes.
"""

from __future__ import annotations

import errno
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import __version__
from ..storage import layout
from ..storage.inputs.video import VideoInfo, VideoWarning, fingerprint, iter_frames, probe_video
from ..storage.lock import RunLock, StoreLocked
from ..storage.run_store import DamagedData, RunStore, StoreMismatch
from .config import ExecutionOptions, RunConfig
from .denoise import initial_noise
from .errors import EngineError
from .model import Model, load_model
from .progress import Progress
from .plan import frame_unit, make_plan
from .repair import repair
from .stages.coalign import coalign
from .stages.export import export
from .stages.ingest import frame_geometry, ingest
from .stages.merge import merge, normalize
from .stages.refine import refine
from .stages.snippets import DeviceTimer, infer_snippets


@dataclass
class RunResult:
    """What a finished run produced: output paths, frame count and per-stage timings."""

    store: Path
    outputs: dict[str, Path]
    num_frames: int
    seconds: float
    stages: list[dict] = field(default_factory=list)


def build_manifest(cfg: RunConfig, video: str) -> dict:
    """What determines the run's bytes: engine version, config and its hash, input, checkpoint."""
    return {"engine": __version__, "config": cfg.to_dict(), "config_hash": cfg.digest(),
            "input": {"name": Path(video).name, "fingerprint": fingerprint(video)},
            "checkpoint": cfg.checkpoint}


def open_store(out_dir: Path, cfg: RunConfig, video: str, overwrite: bool) -> RunStore:
    """Create or resume the run store; a different config or input is an EngineError."""
    try:
        return RunStore.create_or_resume(out_dir / layout.STORE_NAME, build_manifest(cfg, video), overwrite=overwrite)
    except StoreMismatch as exc:
        raise EngineError(str(exc)) from None


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
def warnings_to_stderr():
    """Input warnings (e.g. a truncated stream) as one ``warning:`` line each, even with --quiet."""
    # INTEGRATE: route these through progress.warning(text) (once each, in every mode) so that
    # --log-format json emits {"event": "warning"} objects and a live bar is not overwritten.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                if not issubclass(w.category, VideoWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
                    continue
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    print(f"warning: {text}", file=sys.stderr, flush=True)


def process_video(video: str, out_dir: str | Path, cfg: RunConfig, opts: ExecutionOptions,
                  model: Model | None = None, device_timer: DeviceTimer | None = None) -> RunResult:
    """Run every stage on ``video`` into ``out_dir``; returns paths and timings.

    One process per store (``run.zarr.lock``); an OSError while writing becomes an
    EngineError saying the run can be resumed. ``model``: an already loaded model (else
    loaded from ``cfg.checkpoint``); ``device_timer``: times the snippet stage's device
    work (benchmarks).
    """
    started = time.perf_counter()
    with warnings_to_stderr():
        info: VideoInfo = probe_video(video)
    model = model or load_model(cfg.checkpoint, opts.device, cfg.dtype, opts.attention)
    if cfg.reproduce:
        model = model.as_published()
    out_dir = Path(out_dir)
    store_path = out_dir / layout.STORE_NAME
    with write_errors_as_engine_errors(store_path):
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(store_path)
        try:
            lock.acquire()
        except StoreLocked as exc:
            raise EngineError(str(exc)) from None
    try:
        # INTEGRATE: --log-format (bar|plain|json) -> Progress(mode); auto = bars on a terminal, else plain lines
        progress = Progress("quiet" if opts.quiet else "auto")
        if lock.took_over:
            progress.note(f"took over the lock of process {lock.took_over.get('pid')} "
                          f"(no longer running) on {store_path}")
        with progress, write_errors_as_engine_errors(store_path), warnings_to_stderr():
            store = open_store(out_dir, cfg, video, opts.overwrite)
            return _run(store, video, out_dir, cfg, opts, model, info, progress, started, device_timer)
    finally:
        lock.release()


RUN_REPAIRS = 3  # damaged data found in one run more often than this: the disk is failing


def _run(store: RunStore, video: str, out_dir: Path, cfg: RunConfig, opts: ExecutionOptions, model: Model,
         info: VideoInfo, progress: Progress, started: float, device_timer: DeviceTimer | None) -> RunResult:
    for _ in range(RUN_REPAIRS):
        try:
            return _stages(store, video, out_dir, cfg, opts, model, info, progress, started, device_timer)
        except DamagedData as damage:
            progress.note(f"damaged data in {store.path}: {damage}; {repair(store, damage)}")
    raise EngineError(f"run store {store.path} keeps returning damaged data: check the disk, then rerun "
                      "(or --overwrite)")


def _stages(store: RunStore, video: str, out_dir: Path, cfg: RunConfig, opts: ExecutionOptions, model: Model,
            info: VideoInfo, progress: Progress, started: float, device_timer: DeviceTimer | None) -> RunResult:
    geometry = frame_geometry((info.height, info.width), cfg.res, cfg.geometry, progress)
    if "frame_unit" not in store.info:  # ingest's units: fixed before the first is written
        store.update_info(frame_unit=frame_unit(geometry, opts.unit_frames))
    num_frames = ingest(store, model, clip_frames(video, cfg), clip_length(info.frames_hint, cfg), geometry,
                        store.info["frame_unit"], progress)
    if not num_frames:
        raise EngineError(f"no frames to process in {video} (start {cfg.start} is past the end?)")
    if not store.has(layout.TIME):
        write_coordinates(store, cfg.start + np.arange(num_frames), opts.fps or info.fps)

    free = torch.cuda.mem_get_info(model.device)[0] if model.device.type == "cuda" else None
    plan, new = make_plan(store.info, cfg, opts, num_frames, geometry, np.dtype(model.storage_dtype).itemsize,
                          free, model.device.type, out_dir)
    store.update_info(**new)
    for note in plan.notes:
        progress.note(note)
    global_min = infer_snippets(store, model, plan, cfg.seed, progress, device_timer)
    if not cfg.refine_steps:
        release(store, opts, layout.RGB_LATENTS)

    scales, shifts = coalign(store, plan.groups, global_min, cfg.coalign, opts.coalign_memory, progress,
                             cfg.exact_dtype)
    lo, hi = merge(store, plan, model, scales, shifts, global_min, progress, cfg.exact_dtype)
    release(store, opts, *(name(k) for k in range(len(plan.groups))
                           for name in (layout.snippet_scratch, layout.snippet_samples)))
    normalize(store, plan, lo, hi, progress, cfg.exact_dtype)
    if cfg.refine_steps:
        refine(store, model, plan, initial_noise(model, geometry.latent, cfg.seed), progress, cfg.exact_dtype)
        release(store, opts, layout.RGB_LATENTS, layout.refine_latents(0), layout.refine_latents(1))

    restore = (info.height, info.width) if opts.restore_res else None
    store.clear_unit(layout.COMPLETE, layout.COMPLETE_UNIT)  # rewritten below, once every output is complete again
    outputs = export(store, out_dir, Path(video).stem, opts.save, lambda: clip_frames(video, cfg), video,
                     plan.frame_unit, opts.fps or info.fps, opts.colormap, restore, progress)
    store.mark_done(layout.COMPLETE, layout.COMPLETE_UNIT,
                    {"frames": num_frames, "outputs": {k: str(v) for k, v in outputs.items()},
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    # INTEGRATE: keep every field of s.record() (total, computed, status); store this run's seconds in the
    # run store and put the cumulative seconds and run count on RunResult for summary_lines.
    stages = [{"stage": s.name, "seconds": s.seconds, "items": s.done, "reused": s.reused, "unit": s.unit,
               "rate": s.rate} for s in progress.stages]
    return RunResult(store=store.path, outputs=outputs, num_frames=num_frames,
                     seconds=time.perf_counter() - started, stages=stages)


def clip_frames(video: str, cfg: RunConfig) -> Iterator[np.ndarray]:
    """The clip's frames ``[start, start + frames)``, one ``uint8 [H, W, 3]`` at a time."""
    for batch in iter_frames(video, start=cfg.start, count=cfg.frames, batch=16):
        yield from batch


def clip_length(announced: int, cfg: RunConfig) -> int:
    """The clip's frame count as far as the container announces it (0 = unknown)."""
    available = max(announced - cfg.start, 0)
    return available if cfg.frames is None else min(cfg.frames, available) if announced else cfg.frames


def write_coordinates(store: RunStore, frames: np.ndarray, fps: float) -> None:
    """The ``frame`` numbers and ``time`` (seconds) of every processed frame: coordinates for xarray."""
    store.write_whole(layout.FRAME, frames.astype(np.int64), ("frame",))
    store.write_whole(layout.TIME, (frames - frames[0]) / fps, ("frame",), {"units": "s"})


def release(store: RunStore, opts: ExecutionOptions, *names: str) -> None:
    """Free intermediate arrays whose consumers are done (kept with ``--keep-intermediates``)."""
    if not opts.keep_intermediates:
        store.release(*names)

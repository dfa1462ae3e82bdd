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

import torch

from .. import __version__
from ..storage import layout
from ..storage.inputs import InputWarning, SourceInfo, open_input
from ..storage.lock import RunLock, StoreLocked
from ..storage.run_store import RunStore, StoreMismatch
from .batching import default_batch_size, plan_batches
from .config import ExecutionOptions, RunConfig
from .denoise import initial_noise
from .errors import EngineError
from .model import Model, load_model
from .progress import Progress
from .snippets import plan_snippets, refinement_dilations
from .stages.coalign import coalign
from .stages.export import export
from .stages.ingest import INGEST_CHUNK, frame_geometry, ingest
from .stages.merge import MERGE_CHUNK, merge, normalize
from .stages.refine import DECODE_CHUNK, REFINE_CHUNK, refine
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
            "input": {"name": Path(video).name, "fingerprint": open_input(video).identity()},
            "checkpoint": cfg.checkpoint}


def open_store(out_dir: Path, cfg: RunConfig, video: str, overwrite: bool) -> RunStore:
    """Create or resume the run store; a different config or input is an EngineError."""
    try:
        return RunStore.create_or_resume(out_dir / layout.STORE_NAME, build_manifest(cfg, video), overwrite=overwrite)
    except StoreMismatch as exc:
        raise EngineError(str(exc)) from None


def choose_batch_size(store: RunStore, model: Model, opts: ExecutionOptions, size: tuple[int, int]) -> int:
    """The store's batch size if the run started already (units are batches), else the option or a default."""
    if "batch_size" in store.info:
        return int(store.info["batch_size"])
    free = torch.cuda.mem_get_info(model.device)[0] if model.device.type == "cuda" else None
    batch = opts.batch_size or default_batch_size(model.device.type, free, size[0] * size[1])
    store.update_info(batch_size=batch)
    return batch


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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                if not issubclass(w.category, InputWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
                    continue
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    print(f"warning: {text}", file=sys.stderr, flush=True)


def expected_units(num_frames: int, n_batches: int, refine_steps: int) -> dict[str, int]:
    """Units each stage records when complete (``inspect`` compares against them)."""
    def chunks(size: int) -> int:
        return -(-num_frames // size)

    units = {layout.INGEST: chunks(INGEST_CHUNK), layout.SNIPPETS: n_batches, layout.COALIGN: 1,
             layout.MERGE: chunks(MERGE_CHUNK), layout.NORMALIZE: chunks(MERGE_CHUNK)}
    if refine_steps:
        units.update({layout.REFINE_ENCODE: chunks(REFINE_CHUNK), layout.REFINE: refine_steps * chunks(REFINE_CHUNK),
                      layout.REFINE_DECODE: chunks(DECODE_CHUNK)})
    return units


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
        # INTEGRATE: pass --fps / a stream choice to open_input, and open the source once for probe, manifest,
        # ingest and export (now each opens it again)
        info: SourceInfo = open_input(video).info
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
        progress = Progress(opts.quiet)
        if lock.took_over:
            progress.note(f"took over the lock of process {lock.took_over.get('pid')} "
                          f"(no longer running) on {store_path}")
        with write_errors_as_engine_errors(store_path), warnings_to_stderr():
            store = open_store(out_dir, cfg, video, opts.overwrite)
            return _run(store, video, out_dir, cfg, opts, model, info, progress, started, device_timer)
    finally:
        lock.release()


def _run(store: RunStore, video: str, out_dir: Path, cfg: RunConfig, opts: ExecutionOptions, model: Model | None,
         info: SourceInfo, progress: Progress, started: float, device_timer: DeviceTimer | None) -> RunResult:
    model = model or load_model(cfg.checkpoint, opts.device, cfg.dtype, opts.attention)
    if cfg.reproduce:
        model = model.as_published()

    geometry = frame_geometry((info.height, info.width), cfg.res, cfg.geometry, progress)
    facts = ingest(store, model, video, cfg.start, cfg.frames, geometry, info.frames_estimate, progress)
    if not facts.get("num_frames"):
        raise EngineError(f"no frames to process in {video} (start {cfg.start} is past the end?)")
    num_frames, size = facts["num_frames"], tuple(facts["depth_size"])

    groups, notes = plan_snippets(num_frames, cfg.dilations, cfg.snippet_lens, cfg.cap_dilation)
    for note in notes:
        progress.note(note)
    batch = choose_batch_size(store, model, opts, size)
    batches = plan_batches(groups, batch)
    if "expected_units" not in store.info:
        store.update_info(expected_units=expected_units(num_frames, len(batches), cfg.refine_steps), notes=notes)
    global_min = infer_snippets(store, model, groups, batches, cfg.seed, progress, device_timer)

    scales, shifts = coalign(store, groups, global_min, cfg.coalign, opts.coalign_memory, progress, cfg.exact_dtype)
    lo, hi = merge(store, groups, scales, shifts, global_min, progress, cfg.exact_dtype)
    normalize(store, layout.normalize_target(cfg.refine_steps), lo, hi, progress, cfg.exact_dtype)

    if cfg.refine_steps:
        length = min(cfg.refine_snippet_len, num_frames)
        dilations = refinement_dilations(cfg.refine_steps, cfg.refine_start_dilation, length, num_frames,
                                         cfg.cap_dilation)
        noise = initial_noise(model, tuple(facts["latent_size"]), cfg.seed)
        refine(store, model, dilations, length, noise, batch, progress, cfg.exact_dtype)

    restore = (info.height, info.width) if opts.restore_res else None
    store.clear_unit(layout.COMPLETE, layout.COMPLETE_UNIT)  # rewritten below, once every output is complete again
    # INTEGRATE: for an image sequence (folder, pattern, glob) Path(video).stem is no good output name
    outputs = export(store, out_dir, Path(video).stem, opts.save, video, cfg.start, opts.fps or info.fps,
                     opts.colormap, restore, progress)
    store.mark_done(layout.COMPLETE, layout.COMPLETE_UNIT,
                    {"frames": num_frames, "outputs": {k: str(v) for k, v in outputs.items()},
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    stages = [{"stage": s.name, "seconds": s.seconds, "items": s.done, "reused": s.reused, "unit": s.unit,
               "rate": s.rate} for s in progress.stages]
    return RunResult(store=store.path, outputs=outputs, num_frames=num_frames,
                     seconds=time.perf_counter() - started, stages=stages)


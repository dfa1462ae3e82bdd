"""``rdengine batch``: process an archive of videos on Dask distributed, resumable, one run store per video.

- Each video is one task. By default a LocalCluster runs one worker process per GPU (resource
  ``GPU=1``, the worker pinned to its own GPU) or ``--workers N`` on CPU (resource ``slot=1``),
  one thread each, so a device is never shared. ``--scheduler ADDRESS`` uses a running cluster
  instead; its workers should advertise ``--resources GPU=1`` (or ``slot=1``) and see one GPU each
  (e.g. ``CUDA_VISIBLE_DEVICES``).
- Each video writes ``OUTROOT/<name>/`` (run store ``run.zarr`` + exports); a finished one is
  skipped, a partial one resumes at its first unfinished unit, a lost worker costs only its
  unfinished units (Dask reruns the task elsewhere and the run store resumes).
- A failing video fails alone: its one-line error lands in ``OUTROOT/batch_report.json``.
- Inputs may be fsspec URLs: they are copied to a local cache folder on the worker before decoding.
  Outputs to a non-local URL are processed into a local staging folder on the worker and uploaded
  with fsspec ``put`` when the video is done, so resuming a partial remote-output video works only
  on the worker (machine) that holds its staging folder; elsewhere it starts over.
- Models are loaded once per worker process and reused across videos.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ...storage import layout
from ...storage.exporters import output_path
from ...storage.run_store import read_summary
from ..config import ConfigError, ExecutionOptions, RunConfig
from ..errors import EngineError
from .archive import ArchiveVideo, is_url, local_path, short_hash
from .names import archive_videos
from ..cluster.clusters import Cluster, check_scheduler_address, open_cluster
from ..cluster.progress import LabelledStream, ProgressPrinter, TopicStream
from ..cluster.workers import pin_threads, worker_device, worker_model
from .locations import fetch_input, filesystem, join, upload
from .report import BatchReport, format_table, one_line, write_report

__all__ = ["format_table", "is_finished", "run_batch", "run_video"]


def is_finished(out_dir: str, cfg: RunConfig | None = None, opts: ExecutionOptions | None = None,
                source: str | None = None) -> bool:
    """True when ``out_dir`` holds a completed run (for ``cfg``, with the outputs ``opts`` asks for).

    A run is finished when its store is complete (final record), its manifest matches ``cfg``
    (config hash and the checkpoint's weights) and ``source`` (file name; for local files the content identity, checked
    by size and modification time first and hashed only when those changed), and every requested
    export exists (renamed into place only when complete; 16-bit PNGs counted). Export-only
    options (colormap, fps) are not compared: a finished video is not re-exported.
    """
    summary = read_summary(join(out_dir, layout.STORE_NAME))
    if summary is None or not summary.complete:
        return False
    manifest = summary.manifest
    if cfg is not None and manifest.get("config_hash") != cfg.digest():
        return False
    if cfg is not None:
        from ..model import identify_checkpoint

        try:
            if manifest.get("checkpoint") != identify_checkpoint(cfg.checkpoint):
                return False
        except EngineError:  # not found: processing says so
            return False
    if source is None:
        return True
    file_name = source.rstrip("/").rsplit("/", 1)[-1]
    if manifest.get("input", {}).get("name") != file_name:
        return False
    stem = Path(file_name).stem  # a video's; a local input's as the run names its outputs (``plate.v2/``)
    if not is_url(source):
        from ...storage.inputs import InputError, open_input
        from ..pipeline import output_name

        try:  # a changed input is not finished: processing it reports the mismatch
            opened = open_input(local_path(source))
            if summary.info.get("input_stat") != opened.stat() and \
                    manifest.get("input", {}).get("identity") != opened.identity():
                return False
        except (OSError, InputError):
            return False
        stem = output_name(local_path(source), opened)
    formats = [f for f in (opts.save if opts is not None else ()) if f != "zarr"]
    fs, root = filesystem(out_dir)
    outputs = [output_path(root, stem, fmt).as_posix() for fmt in formats]
    if not all(fs.exists(path) for path in outputs):
        return False
    if "png16" in formats:
        frames = int(summary.info.get("num_frames") or 0)
        try:
            pngs = [p for p in fs.ls(output_path(root, "", "png16").as_posix(), detail=False)
                    if p.endswith(".png") and not p.endswith(".tmp.png")]
        except (FileNotFoundError, OSError):
            return False
        if not frames or len(pngs) < frames:
            return False
    return True


def finished_outputs_intact(out_dir: str) -> bool:
    """Whether ``out_dir`` holds a completed run whose every output (as its sidecar lists them)
    is present."""
    summary = read_summary(join(out_dir, layout.STORE_NAME))
    if summary is None or not summary.complete:
        return False
    fs, root = filesystem(out_dir)
    sidecars = fs.glob(f"{root.rstrip('/')}/*_depth.json")
    try:
        listed = [path for sidecar in sidecars for path in json.loads(fs.cat_file(sidecar))["outputs"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(sidecars) and all(fs.exists(f"{root.rstrip('/')}/{path}") for path in listed)


def stored_frames(out_dir: str) -> int | None:
    """The frame count a run store recorded (``info.num_frames``), if any."""
    summary = read_summary(join(out_dir, layout.STORE_NAME))
    frames = summary.info.get("num_frames") if summary else None
    return int(frames) if frames else None


# ---------------------------------------------------------------- worker side


def run_video(video: ArchiveVideo, out: str, cfg: RunConfig, opts: ExecutionOptions, cache_dir: str | None,
              threads: int | None = None, pin_gpu: bool = False, cluster: Cluster | None = None) -> dict:
    """Process one video into ``out`` (local path or URL); never raises, returns its report row.

    As a Dask task the worker computes the whole video and its progress lines go to the client
    (``cluster.progress``); given the ``cluster``, this process drives the video and its units
    run as tasks on the cluster's workers (a long video)."""
    started = time.perf_counter()
    row = dict(video=video.source, name=video.name, out=out, status="failed", frames=None, seconds=0.0,
               fps=None, error=None, warnings=[], worker=None)
    try:
        stream = LabelledStream(video.name) if cluster is not None else None
        if cluster is None:
            try:
                from distributed import get_worker

                row["worker"] = get_worker().address
                stream = TopicStream(video.name)
            except ValueError:
                pass
        if not opts.overwrite and is_finished(out, cfg, opts, video.source):
            row.update(status="skipped", frames=stored_frames(out))
            return row
        from ..pipeline import process_video

        cache = Path(cache_dir or Path(tempfile.gettempdir()) / "rdengine-batch-cache")
        local_video = fetch_input(video.source, str(cache))
        target = Path(out) if not is_url(out) else cache / "staging" / f"{video.name}-{short_hash(out)}"
        mode = "quiet" if opts.progress == "quiet" or stream is None else \
            "json" if opts.progress == "json" else "plain"
        model = None
        if cluster is None:
            pin_threads(opts.threads or threads)
            opts = dataclasses.replace(opts, device=worker_device(opts.device, pin_gpu))
            model = worker_model(cfg.checkpoint, opts.device, cfg.dtype, opts.attention)
        opts = dataclasses.replace(opts, progress=mode)
        result = process_video(local_video, target, cfg, opts, model=model, progress_stream=stream, cluster=cluster)
        if is_url(out):
            upload(target, out)
            shutil.rmtree(target, ignore_errors=True)
        seconds = time.perf_counter() - started
        row.update(status="done-with-warnings" if result.warnings else "done", frames=result.num_frames,
                   fps=result.num_frames / max(seconds, 1e-9), warnings=result.warnings)
    except Exception as exc:  # noqa: BLE001 - a failing video fails alone, with its message
        row.update(failure(out, one_line(exc)))
    finally:
        row["seconds"] = round(time.perf_counter() - started, 3)
    return row


# ---------------------------------------------------------------- client side


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def estimated_frames(video: ArchiveVideo) -> int:
    """The frame count a local input announces (0: unknown, a URL, or unreadable)."""
    if is_url(video.source) or video.error:
        return 0
    from ...storage.inputs import InputError, open_input

    try:
        return open_input(local_path(video.source)).info.frames_estimate
    except (InputError, OSError):
        return 0


def run_batch(inputs: list[str] | tuple[str, ...], out_root: str, cfg: RunConfig, opts: ExecutionOptions,
              workers: int | None = None, scheduler: str | None = None, cache_dir: str | None = None,
              split_frames: int = 0) -> BatchReport:
    """Process every video of ``inputs`` into ``out_root``; writes and returns the report.

    Each video is one task, except local videos of at least ``split_frames`` frames (0: none)
    going to a folder (every worker must reach it):
    this process drives those one after another, their units spread over every worker, while
    the other videos run as tasks beside them. Ctrl-C (KeyboardInterrupt) shuts the cluster
    down quietly and propagates: every video resumes from its run store on the next run."""
    from distributed import as_completed

    quiet = opts.progress == "quiet"
    if workers is not None and workers < 1:
        raise ConfigError("--workers must be >= 1")
    if workers is not None and scheduler:
        raise ConfigError("--workers starts a local cluster; it cannot be combined with --scheduler")
    if scheduler:
        check_scheduler_address(scheduler)
    if out_root.startswith("memory://"):
        raise ConfigError("memory:// is private to each process; Dask workers cannot share it (use a folder or "
                          "a shared fsspec URL)")
    started = time.perf_counter()
    if not is_url(out_root):
        out_root = local_path(out_root)
    videos = archive_videos(inputs, out_root, exclude=None if is_url(out_root) else out_root)
    if not videos:
        raise EngineError(f"no videos found in {' '.join(map(str, inputs))}")
    if not is_url(out_root):
        Path(out_root).mkdir(parents=True, exist_ok=True)
    if cache_dir and not is_url(cache_dir):
        cache_dir = local_path(cache_dir)
    rows: dict[str, dict] = {}
    pending = []
    for video in videos:
        out = join(out_root, video.name)
        if video.error:
            rows[video.name] = failed_row(video, out, video.error)
        elif not opts.overwrite and is_finished(out, cfg, opts, video.source):
            rows[video.name] = dict(video=video.source, name=video.name, out=out, status="skipped",
                                    frames=stored_frames(out), seconds=0.0, fps=None, error=None, warnings=[],
                                    worker=None)
        else:
            pending.append((video, out))
    log(f"[batch] {len(videos)} videos: {len(videos) - len(pending)} finished already or not found, "
        f"{len(pending)} to process", quiet)
    where = "none (nothing to do)"
    if pending:
        with open_cluster(workers, scheduler, opts.device) as cluster:
            where = cluster.where
            if cluster.resources is None:
                log("[batch] note: the cluster's workers advertise no GPU/slot resources; a worker may run "
                    "several videos at once (start workers with --resources GPU=1)", quiet)
            log(f"[batch] running on {where}", quiet)
            printer = ProgressPrinter(cluster.client, json_lines=opts.progress == "json")
            long = [(v, out) for v, out in pending
                    if split_frames and not is_url(out) and estimated_frames(v) >= split_frames]
            futures = {}
            for video, out in [p for p in pending if p not in long]:
                future = cluster.client.submit(run_video, video, out, cfg, opts, cache_dir, cluster.threads,
                                               cluster.pin_gpu, key=f"rdengine-video-{video.name}-{short_hash(out)}",
                                               pure=False, resources=cluster.resources)
                futures[future] = (video, out)
            for video, out in long:
                log(f"[batch] {video.name}: {estimated_frames(video)} frames, its units spread over the cluster",
                    quiet)
                rows[video.name] = row = run_video(video, out, cfg, opts, cache_dir, cluster=cluster)
                if not row["status"].startswith("done"):
                    log(f"[batch] {video.name}: {row['status']}" + (f": {row['error']}" if row["error"] else ""),
                        quiet)
            done_frames = sum(rows[v.name]["frames"] or 0 for v, _ in long if rows[v.name]["status"].startswith("done"))
            done_videos = len(videos) - len(pending) + len(long)
            for future in as_completed(futures):
                video, out = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the worker died on this video
                    row = failed_row(video, out, one_line(exc))
                rows[video.name] = row
                done_videos += 1
                if row["status"].startswith("done"):
                    done_frames += row["frames"] or 0
                failed = sum(r["status"] == "failed" for r in rows.values())
                elapsed = time.perf_counter() - started
                log(f"[batch] {done_videos}/{len(videos)} videos, {done_frames} frames, "
                    f"{done_frames / max(elapsed, 1e-9):.1f} frames/s"
                    + (f", {failed} failed" if failed else "")
                    + (f" ({video.name}: {row['error']})" if row["status"] == "failed" else ""), quiet)
            printer.close()
    report = BatchReport(out_root=out_root, rows=[rows[v.name] for v in videos],
                         seconds=time.perf_counter() - started, cluster=where)
    report.report_path = write_report(report)
    return report


def failure(out: str, error: str) -> dict:
    """A video's status after ``error``: ``kept`` when ``out`` still holds the intact finished
    outputs of an earlier run (e.g. a rerun with other settings, refused before touching them),
    else ``failed``."""
    if finished_outputs_intact(out):
        return dict(status="kept", frames=stored_frames(out),
                    error=f"{error} (the finished outputs of the earlier run are kept)")
    return dict(status="failed", frames=None, error=error)


def failed_row(video: ArchiveVideo, out: str, error: str) -> dict:
    return dict(video=video.source, name=video.name, out=out, seconds=0.0, fps=None, warnings=[], worker=None,
                **failure(out, error))

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
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.run_store import COMPLETE_RECORD
from .archive import ArchiveVideo, archive_videos, is_url, local_path, short_hash
from .config import ConfigError, ExecutionOptions, RunConfig
from .errors import EngineError

REPORT_NAME = "batch_report.json"
STORE_NAME = "run.zarr"  # engine.pipeline.STORE_NAME (not imported here: the client never needs torch models)
USER_MESSAGE_ERRORS = ("EngineError", "VideoError", "ConfigError", "StoreMismatch", "EvalInputError")

# ---------------------------------------------------------------- output locations (local path or fsspec URL)


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for local paths and URLs alike."""
    if is_url(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(local_path(root), *parts)


def _fs(location: str):
    """(filesystem, path) for a local path or URL."""
    from fsspec.core import url_to_fs

    return url_to_fs(location if is_url(location) else local_path(location))


def _read_json(fs, path: str) -> dict | None:
    try:
        with fs.open(path, "rt") as f:
            return json.load(f)
    except (FileNotFoundError, OSError, ValueError):
        return None


def expected_outputs(name: str, formats: tuple[str, ...]) -> list[str]:
    """Export files (relative to the video's output folder) that exist only once export finished them."""
    files = []
    if "npy" in formats:
        files.append(f"{name}_depth.npy")
    if "mp4" in formats:
        files.append(f"{name}_depth.mp4")
    if "sbs" in formats:
        files.append(f"{name}_sbs.mp4")
    return files


def is_finished(out_dir: str, cfg: RunConfig | None = None, opts: ExecutionOptions | None = None,
                source: str | None = None) -> bool:
    """True when ``out_dir`` holds a completed run (for ``cfg``, with the outputs ``opts`` asks for).

    A run is finished when its store's manifest matches ``cfg`` (config hash) and ``source``
    (file name; fingerprint for local files), every requested export file exists (renamed
    into place only when complete; 16-bit PNGs counted), and the store's final record
    ``_units/complete/run.json`` exists. Stores of engines before that record (no
    ``info.expected_units``) count as finished when the ``depth`` array and the requested
    exports exist; saving only the zarr store then needs a rerun, which finds every unit done.
    Export-only options (colormap, fps) are not compared: a finished video is not re-exported.
    """
    fs, root = _fs(out_dir)
    store = f"{root.rstrip('/')}/{STORE_NAME}"
    meta = _read_json(fs, f"{store}/zarr.json")
    if not meta:
        return False
    attrs = meta.get("attributes", {})
    manifest, info = attrs.get("manifest", {}), attrs.get("info", {})
    if cfg is not None and manifest.get("config_hash") != cfg.digest():
        return False
    stem = Path(source.rstrip("/").rsplit("/", 1)[-1]).stem if source else None
    if source is not None and manifest.get("input", {}).get("name") != source.rstrip("/").rsplit("/", 1)[-1]:
        return False
    if source is not None and not is_url(source):
        from ..storage.video import fingerprint

        try:  # a changed input is not finished: processing it reports the mismatch
            if manifest.get("input", {}).get("fingerprint") != fingerprint(local_path(source)):
                return False
        except OSError:
            return False
    formats = tuple(opts.save) if opts is not None else ()
    try:
        complete = fs.exists(f"{store}/{COMPLETE_RECORD}")
    except OSError:
        complete = False
    if not complete and ("expected_units" in info or set(formats) <= {"zarr"}
                         or not fs.exists(f"{store}/depth/zarr.json")):
        return False  # engines that write the final record (and list expected units) need it
    if stem is None:
        return complete
    if not all(fs.exists(f"{root.rstrip('/')}/{f}") for f in expected_outputs(stem, formats)):
        return False
    if "png16" in formats:
        frames = int(info.get("num_frames") or 0)
        try:
            pngs = [p for p in fs.ls(f"{root.rstrip('/')}/png16", detail=False)
                    if p.endswith(".png") and not p.endswith(".tmp.png")]
        except (FileNotFoundError, OSError):
            return False
        if not frames or len(pngs) < frames:
            return False
    return True


def stored_frames(out_dir: str) -> int | None:
    """The frame count a run store recorded (``info.num_frames``), if any."""
    fs, root = _fs(out_dir)
    meta = _read_json(fs, f"{root.rstrip('/')}/{STORE_NAME}/zarr.json") or {}
    frames = meta.get("attributes", {}).get("info", {}).get("num_frames")
    return int(frames) if frames else None


# ---------------------------------------------------------------- worker side


_MODELS: dict[tuple, object] = {}


def worker_model(checkpoint: str, device: str, dtype: str, attention: str):
    """The model for this worker process, loaded on first use and reused across videos."""
    from .model import load_model

    key = (checkpoint, device, dtype, attention)
    if key not in _MODELS:
        _MODELS.clear()  # one model per worker: a different config replaces it
        _MODELS[key] = load_model(checkpoint, device, dtype, attention)
    return _MODELS[key]


def worker_device(requested: str, pin_gpu: bool) -> str:
    """On our LocalCluster, worker ``i`` owns GPU ``i``; otherwise the requested device as is."""
    import torch

    if pin_gpu and requested in ("auto", "cuda") and torch.cuda.is_available():
        try:
            from distributed import get_worker

            index = int(get_worker().name) % torch.cuda.device_count()
        except (ValueError, TypeError):
            return requested
        torch.cuda.set_device(index)
        return f"cuda:{index}"
    return requested


def fetch_input(source: str, cache_dir: str) -> str:
    """A local path for ``source``: local files as is, URLs copied once into ``cache_dir``."""
    if not is_url(source):
        return local_path(source)
    fs, path = _fs(source)
    target = Path(cache_dir) / "inputs" / short_hash(source, 16) / path.rstrip("/").rsplit("/", 1)[-1]
    size = fs.size(path)
    if target.exists() and target.stat().st_size == size:
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        fs.get_file(path, str(tmp))
    except FileNotFoundError:
        raise EngineError(f"input not found: {source}") from None
    os.replace(tmp, target)
    return str(target)


def upload(staging: Path, out: str) -> None:
    """Copy the staged output folder to the URL ``out`` (exports first, the run store last)."""
    fs, root = _fs(out)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    for local in sorted(staging.rglob("*"), key=lambda p: (STORE_NAME in p.relative_to(staging).parts[:1], str(p))):
        if local.is_file() and not local.name.endswith(".lock"):
            fs.put_file(str(local), f"{root}/{local.relative_to(staging).as_posix()}")


def one_line(exc: BaseException) -> str:
    """User errors' messages as is, anything else ``TypeName: message``; always a single line."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    if type(exc).__name__ in USER_MESSAGE_ERRORS and text:
        return text[:500]
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def run_video(video: ArchiveVideo, out: str, cfg: RunConfig, opts: ExecutionOptions, cache_dir: str | None,
              threads: int | None = None, pin_gpu: bool = False) -> dict:
    """Process one video into ``out`` (local path or URL); never raises, returns its report row."""
    started = time.perf_counter()
    row = dict(video=video.source, name=video.name, out=out, status="failed", frames=None, seconds=0.0,
               fps=None, error=None, worker=None)
    try:
        try:
            from distributed import get_worker

            row["worker"] = get_worker().address
        except ValueError:
            pass
        if not opts.overwrite and is_finished(out, cfg, opts, video.source):
            row.update(status="skipped", frames=stored_frames(out))
            return row
        from .pipeline import process_video

        if threads:
            import torch

            torch.set_num_threads(threads)
        cache = Path(cache_dir or Path(tempfile.gettempdir()) / "rdengine-batch-cache")
        local_video = fetch_input(video.source, str(cache))
        target = Path(out) if not is_url(out) else cache / "staging" / f"{video.name}-{short_hash(out)}"
        device = worker_device(opts.device, pin_gpu)
        opts = dataclasses.replace(opts, device=device, quiet=True)
        model = worker_model(cfg.checkpoint, device, cfg.dtype, opts.attention)
        result = process_video(local_video, target, cfg, opts, model=model)
        if is_url(out):
            upload(target, out)
            shutil.rmtree(target, ignore_errors=True)
        seconds = time.perf_counter() - started
        row.update(status="done", frames=result.num_frames, fps=result.num_frames / max(seconds, 1e-9))
    except Exception as exc:  # noqa: BLE001 - a failing video fails alone, with its message
        row["error"] = one_line(exc)
    finally:
        row["seconds"] = round(time.perf_counter() - started, 3)
    return row


# ---------------------------------------------------------------- client side


@dataclass
class BatchReport:
    """Rows per video (input order) and totals; ``failed`` is the number of failed videos."""

    out_root: str
    rows: list[dict]
    seconds: float
    cluster: str
    report_path: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)

    def to_dict(self) -> dict:
        frames = sum(r["frames"] or 0 for r in self.rows if r["status"] == "done")
        return {"out_root": self.out_root, "cluster": self.cluster, "seconds": round(self.seconds, 3),
                "videos": len(self.rows), "done": sum(r["status"] == "done" for r in self.rows),
                "skipped": sum(r["status"] == "skipped" for r in self.rows), "failed": self.failed,
                "frames_processed": frames, "frames_per_second": frames / max(self.seconds, 1e-9),
                "rows": self.rows}


def format_table(report: BatchReport) -> str:
    """The printed report: video, frames, status, seconds, frames/s, error."""
    header = ("video", "frames", "status", "seconds", "frames/s", "error")
    lines = [(r["name"], "" if r["frames"] is None else str(r["frames"]), r["status"], f"{r['seconds']:.1f}",
              "" if not r["fps"] else f"{r['fps']:.2f}", r["error"] or "") for r in report.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    totals = report.to_dict()
    out = [fmt.format(*header), *(fmt.format(*line) for line in lines),
           f"{totals['videos']} videos: {totals['done']} done, {totals['skipped']} skipped, {totals['failed']} failed; "
           f"{totals['frames_processed']} frames in {report.seconds:.1f} s "
           f"({totals['frames_per_second']:.2f} frames/s)"]
    if report.report_path:
        out.append(f"report: {report.report_path}")
    return "\n".join(line.rstrip() for line in out)


def write_report(report: BatchReport) -> str:
    """``OUTROOT/batch_report.json`` (atomic for local folders); returns its location."""
    location = join(report.out_root, REPORT_NAME)
    blob = json.dumps(report.to_dict(), indent=2)
    if is_url(report.out_root):
        fs, path = _fs(location)
        with fs.open(path, "wt") as f:
            f.write(blob)
    else:
        tmp = location + ".tmp"
        Path(tmp).write_text(blob)
        os.replace(tmp, location)
    return location


def local_cluster(workers: int | None, device: str):
    """(cluster, resources, threads per worker, pin_gpu): one worker per GPU, else ``workers`` on CPU."""
    import torch
    from distributed import LocalCluster

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    if gpus:
        n, resources, threads = min(workers or gpus, gpus), {"GPU": 1}, None
    else:
        n = workers or 1
        resources, threads = ({"GPU": 1}, None) if device.startswith("cuda") else ({"slot": 1}, max(1, (os.cpu_count() or 1) // n))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, resources=resources,
                           host="127.0.0.1", dashboard_address=None)
    return cluster, resources, threads, bool(gpus)


def cluster_resources(client, wait: float = 60) -> dict | None:
    """The per-task resource an existing cluster's workers advertise (GPU, else slot), or None."""
    try:
        client.wait_for_workers(1, timeout=wait)
    except (TimeoutError, OSError) as exc:
        raise EngineError(f"no Dask workers joined scheduler {client.scheduler.address} within {wait:.0f} s "
                          f"({type(exc).__name__})") from None
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    offered = set().union(*(w.get("resources", {}) for w in workers))
    for key in ("GPU", "slot"):
        if key in offered:
            return {key: 1}
    return None


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def run_batch(inputs: list[str] | tuple[str, ...], out_root: str, cfg: RunConfig, opts: ExecutionOptions,
              workers: int | None = None, scheduler: str | None = None, cache_dir: str | None = None) -> BatchReport:
    """Process every video of ``inputs`` into ``out_root``; writes and returns the report."""
    from distributed import Client, as_completed

    if workers is not None and workers < 1:
        raise ConfigError("--workers must be >= 1")
    if workers is not None and scheduler:
        raise ConfigError("--workers starts a local cluster; it cannot be combined with --scheduler")
    if out_root.startswith("memory://"):
        raise ConfigError("memory:// is private to each process; Dask workers cannot share it (use a folder or "
                          "a shared fsspec URL)")
    started = time.perf_counter()
    videos = archive_videos(inputs)
    if not videos:
        raise EngineError(f"no videos found in {' '.join(map(str, inputs))}")
    if not is_url(out_root):
        out_root = local_path(out_root)
        Path(out_root).mkdir(parents=True, exist_ok=True)
    if cache_dir and not is_url(cache_dir):
        cache_dir = local_path(cache_dir)
    rows: dict[str, dict] = {}
    pending = []
    for video in videos:
        out = join(out_root, video.name)
        if not opts.overwrite and is_finished(out, cfg, opts, video.source):
            rows[video.name] = dict(video=video.source, name=video.name, out=out, status="skipped",
                                    frames=stored_frames(out), seconds=0.0, fps=None, error=None, worker=None)
        else:
            pending.append((video, out))
    log(f"[batch] {len(videos)} videos: {len(rows)} finished already, {len(pending)} to process", opts.quiet)

    cluster = None
    done_frames, done_videos = 0, len(rows)
    try:
        if pending:
            if scheduler:
                client = Client(scheduler, timeout="30s")
                resources, threads, pin_gpu = cluster_resources(client), None, False
                if resources is None:
                    log("[batch] note: the cluster's workers advertise no GPU/slot resources; a worker may run "
                        "several videos at once (start workers with --resources GPU=1)", opts.quiet)
                where = f"scheduler {scheduler}"
            else:
                cluster, resources, threads, pin_gpu = local_cluster(workers, opts.device)
                client = Client(cluster)
                where = f"local cluster, {len(cluster.workers)} workers ({next(iter(resources))}=1 each)"
            log(f"[batch] running on {where}", opts.quiet)
            try:
                futures = {}
                for video, out in pending:
                    future = client.submit(run_video, video, out, cfg, opts, cache_dir, threads, pin_gpu,
                                           key=f"rdengine-video-{video.name}-{short_hash(out)}", pure=False,
                                           resources=resources)
                    futures[future] = (video, out)
                for future in as_completed(futures):
                    video, out = futures[future]
                    try:
                        row = future.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the worker died on this video
                        row = dict(video=video.source, name=video.name, out=out, status="failed", frames=None,
                                   seconds=0.0, fps=None, error=one_line(exc), worker=None)
                    rows[video.name] = row
                    done_videos += 1
                    if row["status"] == "done":
                        done_frames += row["frames"] or 0
                    failed = sum(r["status"] == "failed" for r in rows.values())
                    elapsed = time.perf_counter() - started
                    log(f"[batch] {done_videos}/{len(videos)} videos, {done_frames} frames, "
                        f"{done_frames / max(elapsed, 1e-9):.1f} frames/s"
                        + (f", {failed} failed" if failed else "")
                        + (f" ({video.name}: {row['error']})" if row["status"] == "failed" else ""), opts.quiet)
            finally:
                client.close()
        else:
            where = "none (nothing to do)"
    finally:
        if cluster is not None:
            nanny_log = logging.getLogger("distributed.nanny")
            level = nanny_log.level
            nanny_log.setLevel(logging.ERROR)  # "still alive after 4 s, killing": expected for model-holding workers
            try:
                cluster.close()
            finally:
                nanny_log.setLevel(level)
    report = BatchReport(out_root=out_root, rows=[rows[v.name] for v in videos],
                         seconds=time.perf_counter() - started, cluster=where)
    report.report_path = write_report(report)
    return report

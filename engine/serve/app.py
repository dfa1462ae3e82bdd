"""The page of ``rdengine serve`` (Gradio): submit, queue, watch and look at depth runs.

``build(queue, allow_dirs, max_upload)`` makes the page over a ``JobQueue``; ``serve(...)``
starts the queue and the web server. Gradio is imported here only (``rdengine --help`` stays light).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from ...errors import EngineError, RdengineError
from ..errors import describe_os_error
from ..config import EXPORTS, PRESETS, SHOT_MODES
from .jobs import Job, JobQueue
from .security import allowed_path, extract_frames, safe_name
from .watch import read_progress, stage_rows

COLORMAPS = ("Spectral", "turbo", "viridis", "magma", "inferno", "gray")
JOB_COLUMNS = ["job", "input", "status", "shots", "message"]
STAGE_COLUMNS = ["stage", "done", "%", "rate", "ETA", "status"]
SHOT_COLUMNS = ["shot", "first frame", "last frame", "frames", "start s", "end s"]


def new_job(queue: JobQueue, upload: str | None, path: str, options: dict[str, Any], allow_dirs: Sequence[Path],
            max_upload: int) -> Job:
    """Check the options and the input (an upload, or a path under ``allow_dirs``) and queue a job."""
    from ..options import RunOptions

    RunOptions({**queue.defaults, **options})
    if upload and path.strip():
        raise RdengineError("give an upload or a path on the server, not both")
    if upload:
        source = Path(upload)
        if source.stat().st_size > max_upload:
            raise RdengineError(f"{source.name} is larger than the upload limit of {max_upload >> 20} MiB")
        name = safe_name(source.name)
        folder = queue.new_folder(Path(name).stem)
        try:
            if name.lower().endswith(".zip"):
                input_path = extract_frames(source, folder / "input" / "frames", max_upload)
            else:
                input_path = Path(shutil.copyfile(source, folder / "input" / name))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    elif path.strip():
        input_path = allowed_path(path.strip(), allow_dirs)
        name = safe_name(input_path.name)
        folder = queue.new_folder(Path(name).stem)
    else:
        raise RdengineError("upload a video (or a zip of frames) or give a path on the server")
    return queue.submit(folder, input_path, options, name)


def job_rows(queue: JobQueue) -> list[list]:
    rows = []
    for job in reversed(queue.jobs()):
        shots = read_progress(job.log).shots
        rows.append([job.id, job.spec["label"], queue.status(job), f"{shots[0]}/{shots[1]}" if shots else "",
                     job.state["message"]])
    return rows


def progress_text(queue: JobQueue, job: Job) -> str:
    """Markdown: the job's status, shots done/total and warnings."""
    progress = read_progress(job.log)
    status = queue.status(job)
    lines = [f"**{job.id}**: {status}" + (f" ({job.state['message']})" if job.state["message"] else "")]
    if status == "running elsewhere":
        holder = job.lock_holder() or {}
        lines.append(f"its run store is locked by process {holder.get('pid', '?')} on {holder.get('host', '?')}")
    if progress.shots:
        lines.append(f"shots done: {progress.shots[0]}/{progress.shots[1]}")
    lines += [f"- warning: {text}" for text in progress.warnings]
    return "\n\n".join(lines)


def build(queue: JobQueue, allow_dirs: Sequence[Path], max_upload: int):
    """The Gradio ``Blocks`` of the page."""
    import gradio as gr

    from . import look

    def submit(upload, path, preset, res, save, shots):
        options = {"preset": preset, "save": tuple(save), "shots": shots}
        if res not in (None, ""):
            options["res"] = int(res)
        try:
            job = new_job(queue, upload, path or "", options, allow_dirs, max_upload)
        except (RdengineError, OSError) as exc:
            return f"error: {exc}", gr.skip()
        return f"queued {job.id}", gr.update(choices=[row[0] for row in job_rows(queue)], value=job.id)

    def selected(job_id: str | None) -> Job | None:
        try:
            return queue.job(job_id) if job_id else None
        except KeyError:
            return None

    def refresh(job_id, shown):
        rows = job_rows(queue)
        job = selected(job_id)
        ids = [row[0] for row in rows]
        choices = gr.update(choices=ids) if ids != shown[0] else gr.skip()
        if job is None:
            return rows, choices, "", [], (ids, None), *[gr.skip()] * 7
        status = queue.status(job)
        stages = stage_rows(read_progress(job.log))
        key = (job.id, status)
        if key == shown[1]:
            return rows, choices, progress_text(queue, job), stages, (ids, key), *[gr.skip()] * 7
        return rows, choices, progress_text(queue, job), stages, (ids, key), *look_outputs(job, status)

    def look_outputs(job: Job, status: str) -> tuple:
        if status != "done":
            return None, gr.update(maximum=1, value=0), None, None, [], "", []
        count = look.frame_count(job)
        sbs = look.outputs(job).get("sbs")
        return (look.contact_sheet(job), gr.update(maximum=max(count - 1, 1), value=0),
                look.scrub(job, 0, COLORMAPS[0]), str(sbs) if sbs else None, look.shots_rows(job),
                look.meaning_text(job), [str(p) for p in look.downloads(job)])

    def scrub(job_id, index, colormap):
        job = selected(job_id)
        if job is None or queue.status(job) != "done":
            return None
        return look.scrub(job, min(int(index), look.frame_count(job) - 1), colormap)

    def act(action, job_id):
        job = selected(job_id)
        if job is not None:
            action(job)

    with gr.Blocks(title="rdengine serve") as page:
        gr.Markdown("## rdengine serve: RollingDepth video depth")
        shown = gr.State(([], None))
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="video or zip of frames", type="filepath", elem_id="upload")
                path = gr.Textbox(label="or a path on the server (under --allow-dir)", elem_id="path")
                preset = gr.Dropdown(list(PRESETS), value="fast", label="preset")
                res = gr.Number(label="res: longer side in px (empty: the preset's; 0: native)", precision=0,
                                elem_id="res")
                save = gr.CheckboxGroup([f for f in EXPORTS if f != "zarr"], value=["npy", "mp4"], label="save")
                shots = gr.Dropdown(list(SHOT_MODES), value="auto", label="shots (cut detection)")
                submit_button = gr.Button("Submit", variant="primary", elem_id="submit")
                message = gr.Markdown(elem_id="message")
            with gr.Column(scale=2):
                jobs = gr.Dataframe(headers=JOB_COLUMNS, label="jobs", interactive=False, elem_id="jobs")
                job_id = gr.Dropdown([], label="job", elem_id="job")
                with gr.Row():
                    cancel = gr.Button("Cancel", elem_id="cancel")
                    resume = gr.Button("Resume", elem_id="resume")
                progress = gr.Markdown(elem_id="progress")
                stages = gr.Dataframe(headers=STAGE_COLUMNS, label="stages", interactive=False, elem_id="stages")
        with gr.Row():
            with gr.Column():
                sheet = gr.Image(label="contact sheet", interactive=False, elem_id="contact")
                with gr.Row():
                    frame = gr.Slider(0, 1, value=0, step=1, label="frame", elem_id="frame")
                    colormap = gr.Dropdown(list(COLORMAPS), value=COLORMAPS[0], label="colormap", elem_id="colormap")
                scrubber = gr.Image(label="RGB | depth", interactive=False, elem_id="scrubber", format="png")
            with gr.Column():
                video = gr.Video(label="side by side (sbs)", interactive=False, elem_id="sbs")
                shots_table = gr.Dataframe(headers=SHOT_COLUMNS, label="shots", interactive=False, elem_id="shots")
                meaning = gr.Markdown(elem_id="meaning")
                files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")
        look_parts = [sheet, frame, scrubber, video, shots_table, meaning, files]
        submit_button.click(submit, [upload, path, preset, res, save, shots], [message, job_id])
        cancel.click(lambda j: act(queue.cancel, j), [job_id], None)
        resume.click(lambda j: act(queue.resume, j), [job_id], None)
        frame.release(scrub, [job_id, frame, colormap], scrubber)
        colormap.change(scrub, [job_id, frame, colormap], scrubber)
        gr.Timer(1.0).tick(refresh, [job_id, shown], [jobs, job_id, progress, stages, shown, *look_parts],
                           show_progress="hidden")
    return page


def serve(runs: Path, host: str, port: int | None, login: tuple[str, str] | None, allow_dirs: Sequence[Path],
          max_upload: int, defaults: dict[str, Any]) -> None:
    """Start the queue and the page; blocks until the server stops (Ctrl-C). ``EngineError`` (one
    line) when the jobs folder cannot be made or the address cannot be bound."""
    try:
        queue = JobQueue(runs, defaults)
    except OSError as exc:
        raise EngineError(f"cannot use {runs} for jobs: {describe_os_error(exc)}") from None
    queue.start()
    page = build(queue, allow_dirs, max_upload)
    page.queue(default_concurrency_limit=4)
    try:
        page.launch(server_name=host, server_port=port, auth=login, share=False, max_file_size=max_upload,
                    allowed_paths=[str(Path(runs).resolve())], inbrowser=False, footer_links=[], quiet=True)
    except OSError as exc:
        raise EngineError(f"cannot serve on {host}:{port or 7860}: {exc}") from None

"""``rdengine serve``: refusals (bind, paths, uploads), the job queue on disk, and the real page in
headless Chromium: submit a clip, watch it finish, scrub and download; kill the server mid-run
and see the job resume to depth byte-identical to ``rdengine process``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.serve.jobs import RUN_MARK, JobQueue
from rdengine.engine.serve.security import allowed_path, extract_frames, login, safe_name
from rdengine.engine.serve.watch import read_progress
from rdengine.engine.testing.synthetic_clip import write_clip
from rdengine.errors import ConfigError, InputError
from rdengine.storage.lock import RunLock

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OPTIONS = ["--preset", "fast", "--res", "64", "--save", "npy", "--save", "mp4", "--shots", "auto"]


def test_non_local_bind_without_auth_refuses_to_start():
    done = subprocess.run([sys.executable, "-m", "rdengine.cli", "serve", "--host", "0.0.0.0"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--auth" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ConfigError):
        login("10.0.0.5", "user-without-password")
    assert login("0.0.0.0", "ann:secret") == ("ann", "secret") and login("127.0.0.1", None) is None


def test_paths_outside_the_allowed_folders_are_refused(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir(), outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    (allowed / "clip.mp4").write_bytes(b"x")
    (allowed / "link.mp4").symlink_to(outside / "secret.mp4")
    assert allowed_path(str(allowed / "clip.mp4"), [allowed]) == (allowed / "clip.mp4").resolve()
    for path in (outside / "secret.mp4", allowed / ".." / "outside" / "secret.mp4", allowed / "link.mp4"):
        with pytest.raises(InputError, match="outside the folders"):
            allowed_path(str(path), [allowed])
    with pytest.raises(InputError, match="--allow-dir"):
        allowed_path(str(allowed / "clip.mp4"), [])


def test_upload_names_and_zips_of_frames_are_made_safe(tmp_path):
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("..\\x\\.bashrc") == "bashrc"
    assert safe_name("my clip (1).mp4") == "my_clip_1_.mp4" and safe_name("..") == "upload"
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../escape/0001.png", b"png")
        bundle.writestr("shot/0002.png", b"png")
        bundle.writestr("notes.txt", b"not a frame")
    folder = extract_frames(archive, tmp_path / "frames", max_bytes=1 << 20)
    assert sorted(p.name for p in folder.iterdir()) == ["0001.png", "0002.png"]
    assert not (tmp_path / "escape").exists()
    with pytest.raises(InputError, match="upload limit"):
        extract_frames(archive, tmp_path / "small", max_bytes=4)


def test_a_store_locked_by_another_process_is_running_elsewhere(tmp_path):
    queue = JobQueue(tmp_path / "runs", {"device": "cpu"})
    folder = queue.new_folder("clip")
    job = queue.submit(folder, tmp_path / "clip.mp4", {"res": 64}, "clip.mp4")
    assert queue.status(job) == "queued" and queue.jobs() == [job]
    with RunLock(job.out / "run.zarr"):  # as `rdengine process ... -o JOB/out` would
        assert queue.status(job) == "running elsewhere"
        assert queue._next() is None  # the queue leaves it to its holder
    assert queue.status(job) == "queued"


@pytest.mark.slow
def test_cancel_stops_a_job_and_resume_finishes_it(tmp_path, tiny_checkpoint):
    clip = write_clip(tmp_path / "clip.mp4", frames=120, width=64, height=48)
    queue = JobQueue(tmp_path / "runs", {"checkpoint": str(tiny_checkpoint), "device": "cpu"})
    queue.start()
    job = queue.submit(queue.new_folder("clip"), clip, {"res": 64, "save": ["npy", "png16"]}, "clip.mp4")
    wait_for(lambda: '"stage": "snippets"' in job.log.read_text() if job.log.exists() else False, 120, "snippets")
    queue.cancel(job)
    wait_for(lambda: job.state["status"] == "stopped", 60, "the stop")
    assert not (job.out / "clip_depth.npy").exists()
    queue.resume(job)
    wait_for(lambda: job.state["status"] == "done", 120, "the resumed run")
    assert read_progress(job.log).stages["ingest"]["reused"] > 0
    assert np.load(job.out / "clip_depth.npy").shape == (120, 48, 64)
    from rdengine.engine.serve.look import downloads

    archive = next(p for p in downloads(job) if p.suffix == ".zip")  # per-frame png16, zipped
    with zipfile.ZipFile(archive) as bundle:
        assert sum(name.endswith(".png") for name in bundle.namelist()) == 120


# -- the real page -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, checkpoint: Path, allow: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rdengine.cli", "serve", "--runs", str(runs), "--port", str(port),
                               "--checkpoint", str(checkpoint), "--device", "cpu", "--allow-dir", str(allow)],
                              stdout=open(log, "a"), stderr=subprocess.STDOUT, cwd=runs.parent)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError("the server did not answer in 120 s")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def job_folder(runs: Path, label: str) -> Path:
    return next(p for p in runs.iterdir() if (p / "job.json").is_file() and json.loads(
        (p / "job.json").read_text())["label"] == label)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("gradio")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.slow
def test_the_page_runs_a_clip_and_resumes_after_the_server_is_killed(tmp_path, browser, tiny_checkpoint):
    from playwright.sync_api import expect

    runs, allow, log = tmp_path / "runs", tmp_path / "videos", tmp_path / "server.log"
    allow.mkdir()
    clip = write_clip(tmp_path / "clip.mp4", frames=24, width=64, height=48)
    long_clip = write_clip(allow / "long.mp4", frames=120, width=64, height=48)
    server, url = start_server(runs, tiny_checkpoint, allow, log)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        # submit an upload and watch it finish
        page.locator("#upload input[type=file]").set_input_files(str(clip))
        expect(page.locator("#upload")).to_contain_text("clip.mp4", timeout=30_000)
        page.locator("#res input").fill("64")
        page.locator("#res input").press("Tab")
        page.locator("#submit").click()
        expect(page.locator("#message")).to_contain_text("queued", timeout=30_000)
        expect(page.locator("#jobs")).to_contain_text("done", timeout=120_000)
        out = job_folder(runs, "clip.mp4") / "out"
        depth = np.load(out / "clip_depth.npy")
        # the scrubber shows frame 0: RGB | depth in the run's colours
        expect(page.locator("#scrubber img")).to_have_count(1, timeout=30_000)
        picture = page.request.get(page.locator("#scrubber img").get_attribute("src")).body()
        from io import BytesIO

        from PIL import Image

        from rdengine.storage.exporters.colour_video import colour_table, colourize

        shown = np.asarray(Image.open(BytesIO(picture)).convert("RGB"))
        h, w = depth.shape[1:]
        assert shown.shape == (h, 2 * w + 4, 3)
        expected = colourize(depth[:1], depth.min(), depth.max(), colour_table("Spectral"))[0]
        assert np.array_equal(shown[:, w + 4:], expected)
        expect(page.locator("#shots")).to_contain_text("0")
        expect(page.locator("#meaning")).to_contain_text("inverse")
        # a download is the run's file
        row = page.locator("#downloads tr", has=page.locator("td[aria-label='clip_depth.npy']"))
        link = row.locator("td.download a")
        with page.expect_download() as download:
            link.click()
        assert Path(download.value.path()).read_bytes() == (out / "clip_depth.npy").read_bytes()
        if os.environ.get("RDENGINE_SCREENSHOT"):
            page.screenshot(path=os.environ["RDENGINE_SCREENSHOT"], full_page=True)
        # a path outside --allow-dir is refused; one inside is queued
        page.reload()  # clears the upload
        page.locator("#path textarea").fill(str(allow / ".." / "clip.mp4"))
        page.locator("#submit").click()
        expect(page.locator("#message")).to_contain_text("outside the folders", timeout=30_000)
        page.locator("#path textarea").fill(str(long_clip))
        page.locator("#submit").click()
        expect(page.locator("#message")).to_contain_text("queued", timeout=30_000)
        folder = wait_for(lambda: next((p for p in runs.iterdir() if p.name.endswith("-long")), None), 30, "job")
        wait_for(lambda: '"stage": "snippets"' in (folder / "log.txt").read_text(errors="replace")
                 if (folder / "log.txt").exists() else False, 120, "the snippet stage")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    assert json.loads((folder / "state.json").read_text())["status"] == "running"
    server, url = start_server(runs, tiny_checkpoint, allow, log)
    try:
        page.goto(url)
        wait_for(lambda: json.loads((folder / "state.json").read_text())["status"] == "done", 180, "the resumed job")
        expect(page.locator("#jobs")).not_to_contain_text("running", timeout=30_000)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert (folder / "log.txt").read_text().count(RUN_MARK) == 2
    assert read_progress(folder / "log.txt").stages["ingest"]["reused"] > 0  # resumed, not redone
    cli_out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "rdengine.cli", "process", str(long_clip), "-o", str(cli_out),
                           "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q", *OPTIONS],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (folder / "out" / "long_depth.npy").read_bytes() == (cli_out / "long_depth.npy").read_bytes()

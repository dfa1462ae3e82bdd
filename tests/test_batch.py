"""`rdengine batch`: archive expansion and naming, Dask execution, failures, kill-and-resume, existing clusters."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.batch.archive import ArchiveVideo, Found
from rdengine.engine.batch.names import archive_videos, assign_names
from rdengine.engine.batch.run import is_finished, run_video
from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.errors import EngineError
from rdengine.engine.testing.synthetic_clip import write_clip
from rdengine.storage.run_store import RunSummary, read_summary

from rdengine.engine.testing.processes import default_sigint, run_rdengine

EMPTY = RunSummary({}, {}, False)
GOOD = {"a/clip.mp4": 0, "b/clip.mp4": 1, "c/other.mp4": 2}  # two share a file name in different folders


def engine_args(ckpt) -> list[str]:
    return ["--res", "64", "--dtype", "fp32", "--device", "cpu", "--checkpoint", str(ckpt), "--save", "npy",
            "--dilations", "1", "--batch-size", "4"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    for rel, seed in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_clip(root / rel, frames=12, width=64, height=48, seed=seed)
    (root / "bad").mkdir()
    (root / "bad" / "corrupt.mp4").write_bytes(b"this is not a video container\x00" * 64)
    (root / "notes.txt.bak").write_text("ignored: not a video extension")
    return root


@pytest.fixture(scope="module")
def first_batch(archive, tiny_checkpoint, tmp_path_factory):
    """4 clips (one corrupt) on a LocalCluster of 2 worker processes; input and output as file:// URLs."""
    out = tmp_path_factory.mktemp("batch_out")
    started = time.perf_counter()
    proc = run_rdengine("batch", f"file://{archive}", "-o", f"file://{out}", "--workers", "2",
                        *engine_args(tiny_checkpoint), timeout=300)
    return out, proc, time.perf_counter() - started


def npy_outputs(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("*/*_depth.npy"))}


def npy_by_source(out: Path) -> dict[str, bytes]:
    """Each video's depth by its source (the output folder names of ``batch_names.json``)."""
    names = json.loads((out / "batch_names.json").read_text())["names"]
    return {source: (out / name / f"{Path(source).stem}_depth.npy").read_bytes() for source, name in names.items()
            if (out / name / f"{Path(source).stem}_depth.npy").exists()}


# ------------------------------------------------------------------ inputs and names (no cluster)


def test_inputs_expand_from_folders_lists_globs_and_urls(archive, tmp_path):
    expected = sorted(str(archive / rel) for rel in [*GOOD, "bad/corrupt.mp4"])
    assert sorted(v.source for v in archive_videos([str(archive)])) == expected
    assert sorted(v.source for v in archive_videos([f"file://{archive}"])) == expected
    assert sorted(v.source for v in archive_videos([str(archive / "**" / "*.mp4")])) == expected
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# archive\n{archive / 'a/clip.mp4'}\n\n{os.path.relpath(archive / 'b', tmp_path)}\n")
    assert [v.source for v in archive_videos([str(listing), str(archive / "a/clip.mp4")])] == \
        [str(archive / "a/clip.mp4"), str(archive / "b/clip.mp4")]  # each video once
    with pytest.raises(EngineError, match="not found"):
        archive_videos([str(archive / "missing.mp4")])
    with pytest.raises(EngineError, match="matches no files"):
        archive_videos([str(archive / "*.mkv")])


def test_names_are_deterministic_and_never_collide(archive):
    names = {Path(v.source).relative_to(archive).as_posix(): v.name for v in archive_videos([str(archive)])}
    assert names == {"a/clip.mp4": "a__clip", "b/clip.mp4": "b__clip", "c/other.mp4": "c__other",
                     "bad/corrupt.mp4": "bad__corrupt"}
    # same names whatever the listing order; separator clashes and same stems get a hash of the location
    tricky = [Found("/v/a__b.mp4", "a__b.mp4"), Found("/v/a/b.mp4", "a/b.mp4"), Found("/v/x.mp4", "x.mp4"),
              Found("/v/x.mov", "x.mov"), Found("s3://bucket/v/x.mp4", "x.mp4")]
    first = assign_names(tricky)
    assert [v.name for v in assign_names(tricky[::-1])][::-1] == [v.name for v in first]
    assert len({v.name.lower() for v in first}) == len(tricky)
    assert first[0].name.startswith("a__b-") and first[2].name.startswith("x-")


def test_url_input_and_output_round_trip_through_fsspec(clip, tiny_checkpoint, tmp_path):
    """memory:// input is copied to the worker cache; memory:// output is staged locally and uploaded."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/in/clip.mp4", Path(clip).read_bytes())
    cfg = resolve_config("fast", res=64, dtype="fp32", dilations=(1,), checkpoint=str(tiny_checkpoint), frames=12)
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy",), progress="quiet")
    video = ArchiveVideo("memory://in/clip.mp4", "clip")
    assert not is_finished("memory://out/clip", cfg, opts, video.source)
    row = run_video(video, "memory://out/clip", cfg, opts, str(tmp_path / "cache"))
    assert row["status"] == "done" and row["frames"] == 12, row
    assert is_finished("memory://out/clip", cfg, opts, video.source)
    depth = np.load(fs.open("/out/clip/clip_depth.npy", "rb"))
    assert depth.shape == (12, 48, 64) and np.isfinite(depth).all()
    assert not (tmp_path / "cache" / "staging").exists() or not any((tmp_path / "cache" / "staging").iterdir())
    assert run_video(video, "memory://out/clip", cfg, opts, str(tmp_path / "cache"))["status"] == "skipped"
    other = resolve_config("fast", res=64, dtype="fp32", dilations=(1,), checkpoint=str(tiny_checkpoint), seed=1)
    assert not is_finished("memory://out/clip", other, opts, video.source)  # another config is not finished
    missing = run_video(ArchiveVideo("memory://in/nope.mp4", "nope"), "memory://out/nope", cfg, opts,
                        str(tmp_path / "cache"))
    assert missing["status"] == "failed" and "\n" not in missing["error"], missing


# ------------------------------------------------------------------ LocalCluster


@pytest.mark.slow
def test_local_cluster_batch_fails_the_corrupt_video_alone(first_batch, archive):
    out, proc, seconds = first_batch
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads((out / "batch_report.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"a__clip", "b__clip", "c__other", "bad__corrupt"}
    assert report["done"] == 3 and report["failed"] == 1 and report["frames_processed"] == 36
    assert all(rows[n]["status"] == "done" and rows[n]["frames"] == 12 for n in ("a__clip", "b__clip", "c__other"))
    bad = rows["bad__corrupt"]
    assert bad["status"] == "failed" and "corrupt.mp4" in bad["error"] and "\n" not in bad["error"]
    assert "Traceback" not in bad["error"]
    assert len({rows[n]["worker"] for n in rows if rows[n]["worker"]}) >= 1
    assert "[batch] 4/4 videos, 36 frames" in proc.stderr
    assert "bad__corrupt" in proc.stdout and "failed" in proc.stdout and "frames/s" in proc.stdout
    # same-named clips from different folders got their own run stores and different depth
    outputs = npy_outputs(out)
    assert set(outputs) == {"a__clip", "b__clip", "c__other"}
    assert outputs["a__clip"] != outputs["b__clip"]
    assert (out / "a__clip" / "run.zarr").is_dir() and (out / "b__clip" / "run.zarr").is_dir()


@pytest.mark.slow
def test_killed_batch_resumes_and_matches_an_uninterrupted_one(first_batch, archive, tiny_checkpoint, tmp_path):
    reference = npy_by_source(first_batch[0])
    out = tmp_path / "out"
    listing = tmp_path / "good.txt"
    listing.write_text("".join(f"{archive / rel}\n" for rel in GOOD))
    args = [sys.executable, "-m", "rdengine.cli", "batch", str(listing), "-o", str(out), *engine_args(tiny_checkpoint)]
    proc = subprocess.Popen([*args, "--workers", "2"], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not any((read_summary(str(p)) or EMPTY).complete for p in out.glob("*/run.zarr")) \
                and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = [p for p in out.glob("*/*_depth.npy") if read_summary(str(p.parent / "run.zarr")).complete]
    assert len(finished) >= 1 and not (out / "batch_report.json").exists()
    before = {p: p.stat().st_mtime_ns for p in finished}
    store_before = {p.parent.name: p.parent / "run.zarr" / "depth" / "zarr.json" for p in finished}
    stamps = {n: p.stat().st_mtime_ns for n, p in store_before.items()}

    rerun = subprocess.run([*args, "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads((out / "batch_report.json").read_text())
    status = {r["name"]: r["status"] for r in report["rows"]}
    assert all(status[p.parent.name] == "skipped" for p in finished)
    assert all(s in ("done", "skipped") for s in status.values()) and len(status) == 3
    assert {p: p.stat().st_mtime_ns for p in finished} == before  # finished videos were not recomputed
    assert {n: p.stat().st_mtime_ns for n, p in store_before.items()} == stamps
    assert npy_by_source(out) == reference  # byte-identical to the uninterrupted batch


# ------------------------------------------------------------------ an existing cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_existing_scheduler_and_worker_processes(first_batch, archive, tiny_checkpoint, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                       "--port", str(port), "--no-dashboard"], start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--host", "127.0.0.1",
                                       "--nthreads", "1", "--nworkers", "1", "--resources", "slot=1",
                                       "--no-dashboard"], start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "out"
        proc = run_rdengine("batch", str(archive / "a" / "clip.mp4"), str(archive / "c" / "*.mp4"), "-o", str(out),
                            "--scheduler", address, *engine_args(tiny_checkpoint), timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads((out / "batch_report.json").read_text())
        assert report["cluster"] == f"scheduler {address}" and report["done"] == 2
        assert set(npy_outputs(out)) == {"clip", "other"}  # files named directly keep their own names
        outputs, reference = npy_by_source(out), npy_by_source(first_batch[0])
        assert len(outputs) == 2 and outputs == {k: reference[k] for k in outputs}
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_user_errors_are_one_line(tmp_path, tiny_checkpoint):
    from click.testing import CliRunner

    from rdengine.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["batch", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o"),
                                 *engine_args(tiny_checkpoint)])
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("error: input not found")
    result = runner.invoke(cli, ["batch", str(tmp_path), "-o", "memory://x", *engine_args(tiny_checkpoint)])
    assert result.exit_code == 2 and "memory://" in result.stderr.strip().splitlines()[-1]
    result = runner.invoke(cli, ["batch", str(tmp_path), "-o", str(tmp_path / "o"), *engine_args(tiny_checkpoint)])
    assert result.exit_code == 2 and "no videos found" in result.stderr


# ------------------------------------------------------------------ mixed archives, warnings, reruns


def damaged_copy(clip: Path, target: Path) -> Path:
    """``clip`` with 300 random bytes in the middle of its data: decodes with a damaged packet."""
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 300] = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def mixed(tiny_checkpoint, tmp_path_factory):
    """A clip, a damaged clip, a folder of PNG frames and a list whose glob matches nothing, with the
    output root inside the input folder; processed twice."""
    from PIL import Image

    from rdengine.engine.testing.synthetic_clip import synthetic_frames

    root = tmp_path_factory.mktemp("mixed")
    write_clip(root / "clip.mp4", frames=12, width=64, height=48)
    damaged_copy(write_clip(root.parent / f"{root.name}-whole.mp4", frames=48, width=64, height=48),
                 root / "damaged.mp4")
    (root / "plates").mkdir()
    for number, frame in enumerate(synthetic_frames(10, 64, 48, seed=5), start=1001):
        Image.fromarray(frame).save(root / "plates" / f"plate_{number}.png")
    (root / "more.txt").write_text("# a glob that matches nothing fails alone\nnowhere/*.mp4\n")
    out = root / "out"
    args = ("batch", root, root / "more.txt", "-o", out, "--workers", "1", *engine_args(tiny_checkpoint))
    first = run_rdengine(*args, timeout=400)
    first.report = json.loads((out / "batch_report.json").read_text())
    second = run_rdengine(*args, timeout=400)
    return root, out, first, second


@pytest.mark.slow
def test_mixed_archive_statuses_sequences_and_warnings(mixed):
    root, out, first, _ = mixed
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr[-3000:]
    rows = {Path(r["video"]).name: r for r in first.report["rows"]}
    assert set(rows) == {"clip.mp4", "damaged.mp4", "plates", "*.mp4"}, set(rows)
    rows["clip"], rows["damaged"], rows["plates"], rows["nowhere"] = (rows.pop(k) for k in ("clip.mp4", "damaged.mp4",
                                                                                              "plates", "*.mp4"))
    assert rows["clip"]["status"] == "done" and rows["clip"]["frames"] == 12
    assert rows["plates"]["status"] == "done" and rows["plates"]["frames"] == 10
    assert np.load(out / "plates" / "plates_depth.npy").shape == (10, 48, 64)
    damaged = rows["damaged"]
    assert damaged["status"] == "done-with-warnings" and 30 <= damaged["frames"] < 48
    assert any("damaged.mp4" in w for w in damaged["warnings"])
    missing = rows["nowhere"]
    assert missing["status"] == "failed" and "matches no files" in missing["error"]
    assert "done-with-warnings" in first.stdout and str(root / "plates") in first.stdout  # the source column


@pytest.mark.slow
def test_workers_report_per_video_progress(mixed):
    _, _, first, _ = mixed
    lines = first.stderr.splitlines()
    assert any(line.startswith("[clip] [snippets]") for line in lines), first.stderr[-3000:]
    assert any(line.startswith("[plates] [ingest]") for line in lines)
    assert any(line.startswith("[damaged] warning:") for line in lines)


@pytest.mark.slow
def test_output_root_inside_the_input_folder_is_never_input(mixed):
    root, out, _, second = mixed
    rows = {Path(r["video"]).name: r for r in json.loads((out / "batch_report.json").read_text())["rows"]}
    assert set(rows) == {"clip.mp4", "damaged.mp4", "plates", "*.mp4"}, set(rows)  # no outputs as inputs
    assert all(rows[n]["status"] == "skipped" for n in ("clip.mp4", "damaged.mp4", "plates"))
    assert second.returncode == 1 and rows["*.mp4"]["status"] == "failed"
    assert [v.name for v in archive_videos([str(root)], exclude=str(out))] == ["clip", "damaged", "plates"]


@pytest.mark.slow
def test_ctrl_c_ends_a_batch_with_one_line_and_it_resumes(archive, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "rdengine.cli", "batch", str(archive / "a"), str(archive / "c"), "-o", str(out),
            "--workers", "2", *engine_args(tiny_checkpoint)]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "[snippets]" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == "interrupted: rerun the same command to resume", stderr[-3000:]
    for noise in ("Traceback", "CancelledError", "leaked semaphore", "KeyboardInterrupt"):
        assert noise not in stderr, stderr[-3000:]
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(npy_outputs(out)) == {"clip", "other"}  # names under the folders named


@pytest.mark.slow
def test_scheduler_address_errors_are_one_line(tmp_path, tiny_checkpoint):
    clip = write_clip(tmp_path / "c.mp4", frames=6)
    bad_scheme = run_rdengine("batch", clip, "-o", tmp_path / "o", "--scheduler", "foo://host:1",
                              *engine_args(tiny_checkpoint))
    assert bad_scheme.returncode == 2 and "Traceback" not in bad_scheme.stderr
    assert bad_scheme.stderr.strip().splitlines()[-1].startswith("error: --scheduler 'foo://host:1'")
    nobody = f"tcp://127.0.0.1:{free_port()}"
    unreachable = run_rdengine("batch", clip, "-o", tmp_path / "o", "--scheduler", nobody,
                               *engine_args(tiny_checkpoint), timeout=120,
                               env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr, unreachable.stderr
    assert unreachable.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot reach the Dask scheduler at {nobody} within 2 s")


# ------------------------------------------------------------------ issue 28: loops, stable names, BOMs, kept outputs


def clip_at(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_clip(path, **kw)



def test_symlink_loops_never_repeat_a_video(tmp_path):
    root = tmp_path / "archive"
    (root / "shots" / "deep").mkdir(parents=True)
    clip_at(root / "shots" / "deep" / "clip.mp4", frames=2)
    (root / "shots" / "deep" / "loop").symlink_to(root)  # a link back to the top
    (root / "alias").symlink_to(root / "shots")  # the same folder under a second name
    for inputs in ([str(root / "**" / "*.mp4")], [str(root)], [str(root / "**")], [f"{root}/*/deep/*.mp4"]):
        videos = archive_videos(inputs)
        assert [v.source for v in videos] in ([str(root / "alias" / "deep" / "clip.mp4")],
                                              [str(root / "shots" / "deep" / "clip.mp4")]), (inputs, videos)


def test_a_list_file_with_a_byte_order_mark(archive, tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_bytes("\ufeff".encode() + f"{archive / 'a/clip.mp4'}\r\n{archive / 'c'}\r\n".encode())
    assert [v.source for v in archive_videos([str(listing)])] == [str(archive / "a/clip.mp4"),
                                                                  str(archive / "c/other.mp4")]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9.mp4\n".encode("latin-1"))
    with pytest.raises(EngineError, match="not UTF-8 text"):
        archive_videos([str(latin)])


def test_names_never_change_when_other_inputs_appear(tmp_path):
    """A new subfolder, a same-named video and another argument leave every given name as it was."""
    root, out = tmp_path / "archive", tmp_path / "out"
    clip_at(root / "day1" / "clip.mp4", frames=2)
    first = {v.source: v.name for v in archive_videos([str(root)], str(out))}
    assert first == {str(root / "day1" / "clip.mp4"): "day1__clip"}
    clip_at(root / "day2" / "clip.mp4", frames=2, seed=1)  # the common folder of all videos is now root
    clip_at(tmp_path / "elsewhere" / "day1__clip.mp4", frames=2, seed=2)  # wants the same name
    again = {v.source: v.name for v in archive_videos([str(root), str(tmp_path / "elsewhere")], str(out))}
    assert again[str(root / "day1" / "clip.mp4")] == "day1__clip"
    assert again[str(root / "day2" / "clip.mp4")] == "day2__clip"
    assert again[str(tmp_path / "elsewhere" / "day1__clip.mp4")].startswith("day1__clip-")
    alone = {v.source: v.name for v in archive_videos([str(root / "day1" / "clip.mp4")], str(out))}
    assert alone == {str(root / "day1" / "clip.mp4"): "day1__clip"}  # named once, kept whatever the INPUT


def test_runs_made_before_the_name_index_are_found_again(tmp_path):
    """An output folder named by the old common-root rule keeps being used for its video."""
    from rdengine.storage.inputs import open_input
    from rdengine.storage.run_store import RunStore

    root, out = tmp_path / "archive", tmp_path / "out"
    video = clip_at(root / "only" / "take.mp4", frames=2)
    store = RunStore.create_or_resume(out / "take" / "run.zarr", {"input": {"name": "take.mp4", "identity": "x"}})
    store.update_info(input_stat=open_input(str(video)).stat())
    other = RunStore.create_or_resume(out / "only__take" / "run.zarr", {"input": {"name": "take.mp4"}})
    other.update_info(input_stat=[[1, 2]])  # another video's old run: never adopted
    assert [v.name for v in archive_videos([str(root)], str(out))] == ["take"]
    assert json.loads((out / "batch_names.json").read_text())["names"] == {str(video): "take"}


def test_a_sequence_folder_with_dots_is_finished_on_a_rerun_and_a_refused_rerun_keeps_outputs(tmp_path,
                                                                                               tiny_checkpoint):
    from PIL import Image

    from rdengine.engine.testing.synthetic_clip import synthetic_frames

    plates = tmp_path / "plate.v2"
    plates.mkdir()
    for number, frame in enumerate(synthetic_frames(6, 64, 48), start=1):
        Image.fromarray(frame).save(plates / f"f_{number:03d}.png")
    cfg = resolve_config("fast", res=64, dtype="fp32", dilations=(1,), checkpoint=str(tiny_checkpoint))
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy",), progress="quiet")
    out = tmp_path / "out" / "plate.v2"
    video = ArchiveVideo(str(plates), "plate.v2")
    assert run_video(video, str(out), cfg, opts, None)["status"] == "done"
    assert (out / "plate.v2_depth.npy").exists() and is_finished(str(out), cfg, opts, str(plates))
    assert run_video(video, str(out), cfg, opts, None)["status"] == "skipped"
    before = (out / "plate.v2_depth.npy").read_bytes()
    other = resolve_config("fast", res=32, dtype="fp32", dilations=(1,), checkpoint=str(tiny_checkpoint))
    refused = run_video(video, str(out), other, opts, None)
    assert refused["status"] == "kept" and refused["frames"] == 6, refused
    assert "different config" in refused["error"] and "earlier run are kept" in refused["error"]
    assert (out / "plate.v2_depth.npy").read_bytes() == before
    (out / "plate.v2_depth.npy").unlink()  # outputs no longer intact: a plain failure
    assert run_video(video, str(out), other, opts, None)["status"] == "failed"


@pytest.mark.slow
def test_a_killed_worker_leaves_no_leaked_semaphore_warning(tmp_path, tiny_checkpoint):
    """The root of the Ctrl-C noise: a worker killed after writing chunks must own no semaphore
    registered with the tracker of the batch process (it prints "leaked semaphore" at exit)."""
    import psutil

    video = write_clip(tmp_path / "clip.mp4", frames=24, width=64, height=48)
    args = [sys.executable, "-m", "rdengine.cli", "batch", str(video), "-o", str(tmp_path / "out"), "--workers", "1",
            *engine_args(tiny_checkpoint), "--unit-frames", "8"]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "[clip] [snippets]" in line:  # the worker has written chunks of rgb_latents
            break
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 1, seen
    workers[0].kill()
    _, rest = proc.communicate(timeout=300)
    stderr = "".join(seen) + rest
    assert proc.returncode == 0, stderr[-3000:]  # Dask ran the video again on the restarted worker
    assert "leaked semaphore" not in stderr and "resource_tracker" not in stderr, stderr[-3000:]

"""Crash safety: SIGKILL at many moments, resume, and get the bytes of an uninterrupted run.

Also: one process per store (lock, stale lock takeover), config/input mismatch, --overwrite,
write errors (RLIMIT_FSIZE) that leave the store resumable, and ``inspect --verify``.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from rdengine.engine.inspection import store_plan
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_edit, write_clip
from rdengine.storage.run_store import RunStore

FULL = ("--preset", "full", "--res", "64", "--dtype", "fp32", "--device", "cpu", "--dilations", "1", "4",
        "--refine-steps", "3", "--batch-size", "4", "--unit-frames", "8", "--unit-seconds", "0.01", "--save", "npy",
        "--save", "png16", "-q")

# 24 frames in units of 8: 3 units per per-frame stage, 10 snippet units of one batch each (38 snippets in
# batches of 4: --unit-seconds that small gives every batch its own unit), 9 refinement units.
# (stage, count, how): "poll" = the test SIGKILLs as soon as the stage holds that many records
# (landing inside the next unit's computation or writes); "before"/"after" = the process kills
# itself after the unit's data but before its record, or right after the record; "write" = in
# the middle of the process's count-th shard write to an array whose name starts with the first
# field (half of the unit's rows written); "solve" = at the count-th objective evaluation of the
# co-alignment. KILLER wraps RunStore.mark_done, CheckedArray.write and the solver's objective.
KILLS = [("ingest", 1, "poll", 0.0), ("rgb_latents", 2, "write", None), ("snippets", 1, "before", None),
         ("snippets", 2, "write", None), ("coalign", 5, "solve", None), ("coalign", 1, "before", None),
         ("merge", 2, "after", None), ("normalize", 2, "before", None), ("depth", 2, "write", None),
         ("refine", 2, "poll", 0.0), ("refine-decode", 2, "before", None), ("export", 3, "before", None)]

KILLER = """
import os, signal, sys
import numpy as np
from rdengine.engine.coalign import fast
from rdengine.storage.run_store import CheckedArray, RunStore
stage, count, moment = sys.argv[1], int(sys.argv[2]), sys.argv[3]
record, write, evaluate = RunStore.mark_done, CheckedArray.write, fast.evaluate
state = {"writes": 0, "evaluations": 0}

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def mark_done(self, unit_stage, unit, data=None):
    held = len(self.done_units(unit_stage)) + 1
    if unit_stage == stage and moment == "before" and held >= count:
        kill()
    record(self, unit_stage, unit, data)
    if unit_stage == stage and moment == "after" and held >= count:
        kill()

def half_write(self, first, data):
    state["writes"] += self.name.startswith(stage)
    if moment == "write" and self.name.startswith(stage) and state["writes"] >= count and len(data) > 1:
        self.zarr[first:first + len(data) // 2] = np.asarray(data)[:len(data) // 2]
        kill()
    write(self, first, data)

def counted(*args, **kwargs):
    state["evaluations"] += 1
    if moment == "solve" and state["evaluations"] >= count:
        kill()
    return evaluate(*args, **kwargs)

RunStore.mark_done, CheckedArray.write, fast.evaluate = mark_done, half_write, counted
from rdengine.cli import main
main(sys.argv[4:])
"""


def command(clip, out, ckpt, *extra):
    return [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
            str(ckpt), *FULL, *extra]


def records(out: Path, stage: str) -> int:
    folder = out / "run.zarr" / "_units" / stage
    return len(list(folder.glob("*/zarr.json"))) if folder.is_dir() else 0


def kill_at(cmd, out: Path, stage: str, count: int, how: str, delay: float | None) -> int:
    """Run ``cmd`` until the kill moment; returns its exit status (-9 when killed)."""
    if how != "poll":
        cmd = [sys.executable, "-c", KILLER, stage, str(count), how, *cmd[3:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if how == "poll":
        deadline = time.monotonic() + 300
        while proc.poll() is None and records(out, stage) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay or 0)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err and proc.returncode in (0, -signal.SIGKILL), (stage, count, how, err)
    return proc.returncode


def assert_same_outputs(a: Path, b: Path, name: str, frames: int = 24) -> None:
    assert (a / f"{name}_depth.npy").read_bytes() == (b / f"{name}_depth.npy").read_bytes()
    da, db = zarr.open_group(str(a / "run.zarr"), mode="r")["depth"], zarr.open_group(str(b / "run.zarr"), mode="r")["depth"]
    np.testing.assert_array_equal(da[:], db[:])
    chunks_a = sorted((a / "run.zarr" / "depth").rglob("c/**/*"))
    for f in (p for p in chunks_a if p.is_file()):
        assert f.read_bytes() == (b / "run.zarr" / "depth" / f.relative_to(a / "run.zarr" / "depth")).read_bytes()
    pngs = sorted(p.name for p in (a / "png16").glob("*.png"))
    assert pngs == sorted(p.name for p in (b / "png16").glob("*.png")) and len(pngs) == frames
    for p in pngs:
        assert (a / "png16" / p).read_bytes() == (b / "png16" / p).read_bytes()


@pytest.fixture(scope="module")
def baseline(clip, tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    proc = subprocess.run(command(clip, out, tiny_checkpoint), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_at_ten_moments_then_resume_is_byte_identical(baseline, clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "killed"
    cmd = command(clip, out, tiny_checkpoint)
    statuses = [kill_at(cmd, out, *kill) for kill in KILLS]
    assert statuses.count(-signal.SIGKILL) >= len(KILLS) - 2, statuses  # a fast poll kill may miss a finished run
    assert not (out / "run.zarr" / "_units" / "complete").is_dir() or statuses[-1] == 0
    proc = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=600)  # not quiet: shows reuse
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stderr and "Traceback" not in proc.stderr
    assert_same_outputs(out, baseline, clip.stem)
    check = run_rdengine("inspect", out, "--verify")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "COMPLETE" in check.stdout


# An edit of three shots (8 + 10 + 12 frames; cuts at 8 and 18 inside the shards of 8 frames): kills
# inside a shot's stages, between them, in a snippet unit that holds two shots, during the first
# shot's exports, and while the last shot is refined, with the earlier shots already final.
# Three shots (8, 10, 12 frames) in the order an uninterrupted run records them: inside shot 0's
# snippets, between its snippets and co-alignment, during its export, at the boundary (its shot
# record written, shot 1's snippets ahead), inside shot 1's depth writes, refinement and export,
# after shot 2's merge, during its export, and while the finished formats are closed. Counts are
# the stage's records in the store (a kill waits for the next record once the count is passed).
SHOT_KILLS = [("snippets", 3, "write", None), ("coalign", 1, "before", None), ("export", 2, "before", None),
              ("export", 4, "after", None), ("depth", 2, "write", None), ("refine", 7, "before", None),
              ("export", 9, "before", None), ("merge", 5, "after", None), ("export", 15, "before", None),
              ("export", 20, "after", None)]


def test_sigkill_across_shot_boundaries_then_resume_is_byte_identical(tiny_checkpoint, tmp_path):
    frames, cuts = synthetic_edit([8, 10, 12], 64, 48, seed=5)
    clip = encode_frames(tmp_path / "edit.mkv", frames, codec="ffv1", pix_fmt="yuv444p")
    (tmp_path / "cuts.txt").write_text("\n".join(map(str, cuts)))
    extra = ("--shots", str(tmp_path / "cuts.txt"), "--save", "exr")
    reference = tmp_path / "reference"
    done = subprocess.run(command(clip, reference, tiny_checkpoint, *extra), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    cmd = command(clip, out, tiny_checkpoint, *extra)
    statuses = [kill_at(cmd, out, *kill) for kill in SHOT_KILLS]
    assert statuses == [-signal.SIGKILL] * len(SHOT_KILLS), statuses
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert_same_outputs(out, reference, clip.stem, frames=30)
    exr = sorted(p.name for p in (out / "exr").glob("*.exr"))
    assert len(exr) == 30 and all((out / "exr" / n).read_bytes() == (reference / "exr" / n).read_bytes() for n in exr)
    assert run_rdengine("inspect", out, "--verify").returncode == 0


def test_inspect_verify_detects_damage(baseline, tmp_path):
    store = tmp_path / "copy"
    shutil.copytree(baseline, store)
    ok = run_rdengine("inspect", store / "run.zarr", "--verify")
    assert ok.returncode == 0 and "10 / 10     batches  complete" in ok.stdout, ok.stdout + ok.stderr
    shard = store / "run.zarr" / "depth" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    bad = run_rdengine("inspect", store, "--verify")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "depth" in bad.stderr and "error:" in bad.stderr and "damaged" in bad.stderr
    shutil.rmtree(store)
    shutil.copytree(baseline, store)
    RunStore(store / "run.zarr").clear_unit("snippets", "b0000004")  # a lost record
    bad = run_rdengine("inspect", store, "--verify")
    assert bad.returncode != 0 and "stage snippets has 9 of 10 batches" in bad.stderr, bad.stderr
    shutil.rmtree(store / "run.zarr" / "depth" / "c")
    bad = run_rdengine("inspect", store, "--verify")
    assert bad.returncode != 0 and "array depth rows from 0 are missing" in bad.stderr, bad.stderr
    missing = run_rdengine("inspect", tmp_path / "nowhere")
    assert missing.returncode != 0 and missing.stderr.startswith("error:")


def test_rerun_with_other_config_or_input_is_refused_and_overwrite_starts_over(baseline, clip, tiny_checkpoint,
                                                                              tmp_path):
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    proc = run_rdengine(*command(clip, out, tiny_checkpoint, "--seed", "7")[3:])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config.seed (2024 -> 7)" in proc.stderr and "--overwrite" in proc.stderr, proc.stderr
    changed = tmp_path / clip.name
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 1  # inside a packet: the same size, head and tail, other content
    changed.write_bytes(bytes(data))
    proc = run_rdengine(*command(changed, out, tiny_checkpoint)[3:])
    assert proc.returncode == 2 and "input.identity" in proc.stderr, proc.stderr
    before = json.loads((out / "run.zarr" / "zarr.json").read_text())["attributes"]["manifest"]
    proc = run_rdengine(*command(clip, out, tiny_checkpoint, "--seed", "7", "--frames", "3", "--overwrite")[3:])
    assert proc.returncode == 0, proc.stderr
    after = json.loads((out / "run.zarr" / "zarr.json").read_text())["attributes"]["manifest"]
    assert before["config"]["seed"] == 2024 and after["config"]["seed"] == 7
    assert np.load(out / f"{clip.stem}_depth.npy").shape[0] == 3  # a fresh run, nothing of the old one mixed in
    assert len(list((out / "png16").glob("*.png"))) == 3  # frames of the discarded run are gone
    assert not list(tmp_path.glob("run/.run.zarr*"))


HOLD = """
import sys, time
from rdengine.storage.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_process_on_a_store_is_refused_and_a_stale_lock_is_taken_over(baseline, clip, tiny_checkpoint,
                                                                             tmp_path):
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / "run.zarr")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_rdengine(*command(clip, out, tiny_checkpoint)[3:])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"in use by process {holder.pid}" in proc.stderr, proc.stderr
    finally:
        holder.kill()
        holder.wait()
    # the killed holder left its lock file behind (pid gone): the next run takes it over
    assert json.loads((out / "run.zarr.lock").read_text())["pid"] == holder.pid
    proc = run_rdengine(*command(clip, out, tiny_checkpoint)[3:-1])
    assert proc.returncode == 0, proc.stderr
    assert f"took over the lock of process {holder.pid}" in proc.stderr
    assert_same_outputs(out, baseline, clip.stem)


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_write_error_is_one_line_and_the_run_resumes_byte_identical(baseline, clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    cmd = command(clip, out, tiny_checkpoint)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(out / "run.zarr") in lines[0] and "resum" in lines[0], proc.stderr
    assert not (out / "run.zarr" / "_units" / "complete").exists()
    assert not (out / f"{clip.stem}_depth.npy").exists()
    assert (out / "run.zarr" / "_units" / "ingest").is_dir()  # it failed mid-run, with units done
    proc = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "reused" in proc.stderr, proc.stderr
    assert_same_outputs(out, baseline, clip.stem)


def test_a_kill_mid_stage_loses_at_most_about_one_unit_of_device_time(tiny_checkpoint, tmp_path):
    """Units sized by measured time: with --unit-seconds 1 on a run whose snippet stage takes many
    seconds, a SIGKILL mid-stage loses only the unit in flight; the resumed run says what it reused."""
    clip = write_clip(tmp_path / "slow.mp4", frames=40, width=128, height=96)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out), "--checkpoint",
            str(tiny_checkpoint), "--res", "128", "--dtype", "fp32", "--device", "cpu", "--threads", "1",
            "--dilations", "1", "4", "10", "--batch-size", "2", "--unit-seconds", "1", "--shots", "none",
            "--save", "npy", "--log-format", "json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and records(out, "snippets") < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = RunStore(out / "run.zarr", mode="r")
    units = store.done_units("snippets")
    assert len(units) >= 4
    assert max(record["seconds"] for record in units.values()) < 3.0  # about a second of device work each
    _, plan = store_plan(store)
    kept = sum(len(plan.batches[b].members) for unit, record in units.items() for b in range(int(unit[1:]), record["stop"]))
    assert 0 < kept < plan.snippets
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stderr.splitlines() if line.startswith("{")]
    end = next(e for e in events if e["event"] == "stage_end" and e["stage"] == "snippets")
    assert end["reused"] == kept and end["computed"] == plan.snippets - kept  # lost: the unit in flight only

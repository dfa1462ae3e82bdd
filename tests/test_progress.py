"""Progress output: plain lines off a terminal, live tqdm bars on a real pseudo-terminal, JSON lines,
quiet, and the honest run summary (fresh, resumed, fully reused)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

import rdengine
from rdengine.engine.progress import Progress, summary_lines

PACKAGE_PARENT = str(Path(rdengine.__file__).parent.parent)  # children import the same rdengine as the tests

PERIODIC = re.compile(r"^\[(\w+)\]  (\d+)/(~?\d+|\?)(?:  (~?[\d.]+)%)?(?:  \((\d+) reused\))?  "
                      r"(\S+) (\w+)/s(?:  ETA (\S+))?$")


def child_env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])),
            **extra}


def stage_work(progress: Progress, reused: int = 10, computed: int = 10, pause: float = 0.02):
    timer = progress.stage("snippets", reused + computed, unit="snippets")
    timer.advance(reused, reused=True)
    for _ in range(computed):
        time.sleep(pause)
        timer.advance()
    return timer


def test_plain_lines_start_periodic_end_with_reuse_outside_the_rate():
    out = io.StringIO()
    progress = Progress("auto", stream=out, interval=0.05)  # a StringIO is no terminal: plain lines
    assert progress.mode == "plain"
    timer = stage_work(progress, reused=1000, computed=10, pause=0.03)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[snippets] start: 1010 snippets"
    periodic = [PERIODIC.match(line) for line in lines[1:-1]]
    assert periodic and all(periodic), lines
    for m in periodic:
        name, done, total, pct, reused, rate, unit, eta = m.groups()
        assert (name, total, reused, unit) == ("snippets", "1010", "1000", "snippets")
        assert float(pct) == pytest.approx(100 * int(done) / 1010, abs=0.06)
        assert float(rate) < 100  # ~33/s computed; with the 1000 reused units it would read thousands/s
        assert eta is not None and re.fullmatch(r"[\d.]+s|\d+m\d\ds", eta)
    end = re.fullmatch(r"\[snippets\] done in ([\d.]+)s: 1010 snippets, 10 computed \(([\d.]+) snippets/s\), "
                       r"1000 reused", lines[-1])
    assert end, lines[-1]
    assert float(end.group(2)) == pytest.approx(10 / timer.seconds, rel=0.1) and float(end.group(2)) < 100
    assert (timer.done, timer.reused, timer.computed, timer.total, timer.closed) == (1010, 1000, 10, 1010, True)
    assert timer.rate == pytest.approx(timer.computed / timer.seconds)


def test_plain_lines_come_at_most_every_interval():
    out = io.StringIO()
    stage_work(Progress("plain", stream=out, interval=10.0), computed=10, pause=0.01)
    assert len(out.getvalue().splitlines()) == 2  # start and end only: the stage took far less than 10 s


def test_auto_mode_writes_plain_lines_to_a_pipe():
    script = ("import time\nfrom rdengine.engine.progress import Progress\n"
              "p = Progress(interval=0.05)\nt = p.stage('merge', 8)\n"
              "for _ in range(8):\n    time.sleep(0.02); t.advance()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and lines[0] == "[merge] start: 8 frames"
    assert any(PERIODIC.match(line) for line in lines[1:-1]), lines
    assert re.fullmatch(r"\[merge\] done in [\d.]+s: 8 frames \([\d.]+ frames/s\)", lines[-1])


def test_unknown_and_estimated_totals_never_read_n_of_1():
    out = io.StringIO()
    progress = Progress("plain", stream=out, interval=0.0)
    unknown = progress.stage("ingest", None)
    unknown.advance(100)
    assert unknown.total is None and unknown.eta_s is None
    guess = progress.stage("decode", 1, estimate=True)  # e.g. a bad frame count in the container
    for _ in range(5):
        guess.advance(20)
    assert (guess.total, guess.estimate) == (100, True)
    guess.set_total(100)  # the stream ended: the count is known
    text = out.getvalue()
    assert "[ingest] start: frames, total unknown" in text and "[ingest]  100/?  " in text
    assert "[ingest] done in" in text and ": 100 frames" in text  # closed by the next stage: count now known
    assert "[decode] start: ~1 frames (estimated)" in text and "100/~100  ~100.0%" in text
    for done, total in re.findall(r"(\d+)/~?(\d+)", text):
        assert int(done) <= int(total), text
    assert (guess.total, guess.estimate, guess.closed) == (100, False, True)


def test_stage_as_context_manager_and_stopped_stage():
    out = io.StringIO()
    progress = Progress("plain", stream=out)
    with progress.stage("export", None) as timer:
        timer.advance(3)
    assert timer.closed and timer.total == 3
    with pytest.raises(RuntimeError), progress:
        progress.stage("refine", 10).advance(4)
        raise RuntimeError("boom")
    assert progress.stages[-1].status == "stopped"
    assert re.search(r"^\[refine\] stopped after [\d.]+s: 4/10 frames", out.getvalue(), re.M)


def test_advance_from_several_threads():
    progress = Progress("plain", stream=io.StringIO(), interval=0.0)
    timer = progress.stage("snippets", 4000, unit="snippets")

    def work(reused: bool) -> None:
        for _ in range(1000):
            timer.advance(1, reused=reused)

    threads = [threading.Thread(target=work, args=(k % 2 == 0,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (timer.done, timer.reused, timer.computed, timer.closed) == (4000, 2000, 2000, True)


def run_on_terminal(script: str, columns: int = 100, timeout: float = 30.0) -> tuple[str, str]:
    """Run ``script`` with its stderr on a real pseudo-terminal; returns (stdout, what the terminal got)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=child_env(TERM="xterm"))
    os.close(slave)
    got = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            got += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    stdout = proc.stdout.read().decode()
    proc.wait(timeout=10)
    return stdout, got.decode()


def test_live_bar_on_a_terminal():
    script = ("import time\nfrom rdengine.engine.progress import Progress\n"
              "p = Progress()\nprint(p.mode)\n"
              "t = p.stage('snippets', 40, unit='snippets')\nt.advance(10, reused=True)\n"
              "for i in range(30):\n    time.sleep(0.03); t.advance()\n"
              "    if i == 5: p.warning('careful'); p.warning('careful')\n"
              "t = p.stage('ingest', 10, estimate=True)\n"
              "for _ in range(14):\n    time.sleep(0.03); t.advance()\n"
              "t.set_total(14)\n")
    stdout, screen = run_on_terminal(script)
    assert stdout.strip() == "bar"
    frames = [f for f in re.split(r"[\r\n]+", screen) if f.strip()]
    running = [f for f in frames if f.startswith("[snippets]") and "ETA" in f]
    assert running, screen
    live = [f for f in running if re.search(r"\b\d{1,3}%\|", f) and re.search(r"ETA \d", f)]
    assert live, running  # a percentage and a remaining time while it runs
    assert any("(10 reused)" in f and re.search(r"[\d.]+ snippets/s", f) for f in live), live
    assert "\r" in screen  # redrawn in place, not one line per update
    assert screen.count("warning: careful") == 1
    assert any(re.search(r"\[snippets\] 100%\|.*40/40 snippets \(10 reused\) \[done in", f) for f in frames), frames
    assert any(re.search(r"\[ingest\] ~\d+%\|.*/~1[04] frames", f) for f in frames), frames  # an estimate: ~
    assert any(re.search(r"\[ingest\] 100%\|.*14/14 frames \[done in", f) for f in frames), frames
    assert not re.search(r"(\d+)/~?1 ", screen)


def test_json_lines():
    out = io.StringIO()
    progress = Progress("json", stream=out, interval=0.05)
    stage_work(progress, reused=10, computed=10, pause=0.02)
    progress.note("co-alignment done")
    progress.warning("stream truncated")
    progress.warning("stream truncated")
    progress.summary(5.0, 12.0, 20, runs=2)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "stage_start" and kinds[-3:] == ["note", "warning", "summary"]
    assert kinds.count("stage_end") == 1 and kinds.count("warning") == 1 and "progress" in kinds
    for e in (e for e in events if e["event"] == "progress"):
        assert {"stage", "done", "total", "reused", "rate", "eta_s", "elapsed_s"} <= set(e)
        assert e["stage"] == "snippets" and e["total"] == 20 and e["reused"] == 10
        assert e["rate"] == pytest.approx((e["done"] - 10) / e["elapsed_s"], rel=0.05, abs=0.5)
        assert e["eta_s"] is None or e["eta_s"] >= 0
    end = events[kinds.index("stage_end")]
    assert (end["done"], end["reused"], end["computed"], end["status"]) == (20, 10, 10, "done")
    assert end["seconds"] > 0 and end["rate"] == pytest.approx(10 / end["seconds"], rel=0.01)
    assert events[-3]["message"] == "co-alignment done" and events[-2]["message"] == "stream truncated"
    summary = events[-1]
    assert (summary["frames"], summary["computed_frames"], summary["reused_frames"]) == (20, 10, 10)
    assert summary["cumulative_s"] == 12.0 and summary["runs"] == 2 and summary["rate"] == 2.0


def test_quiet_prints_only_warnings_once_each():
    out = io.StringIO()
    for progress in (Progress("quiet", stream=out, interval=0.0), Progress(True, stream=out, interval=0.0)):
        assert progress.quiet
        stage_work(progress, computed=3, pause=0.0)
        progress.stage("ingest", None).advance(5)
        progress.note("a note")
        progress.close()
        progress.warning("input ends early")
        progress.warning("input ends early")
    assert out.getvalue() == "warning: input ends early\n" * 2  # once per Progress


# -- the run summary ------------------------------------------------------------------------------

def pipeline_stage(name: str, items: int, reused: int, seconds: float, unit: str = "frames") -> dict:
    """A stage as the pipeline's RunResult.stages has it."""
    return {"stage": name, "seconds": seconds, "items": items, "reused": reused, "unit": unit,
            "rate": (items - reused) / seconds if seconds else 0.0}


def test_summary_of_a_fresh_run():
    stages = [pipeline_stage("ingest", 1800, 0, 40.0), pipeline_stage("snippets", 3548, 0, 1500.0, "snippets"),
              pipeline_stage("export", 1800, 0, 30.0)]
    lines = summary_lines(stages, 1587.0, 1587.0, 1800, runs=1)
    assert lines[0] == "1800 frames: 1800 computed in this run (1587.0 s, 1.13 frames/s)"
    assert re.fullmatch(r"  snippets +1500\.00 s +2\.37 snippets/s  3548 snippets", lines[2])
    assert len(lines) == 4


def test_summary_of_a_resumed_run():
    stages = [pipeline_stage("ingest", 1800, 1800, 0.1), pipeline_stage("snippets", 3548, 891, 350.0, "snippets"),
              pipeline_stage("merge", 1800, 0, 20.0)]
    lines = summary_lines(stages, 386.1, 1587.0, 1800, runs=3)
    assert lines[0] == ("1800 frames: 1348 computed in this run (386.1 s, 3.49 frames/s), 452 reused; "
                        "1587.0 s across 3 runs")
    assert re.fullmatch(r"  ingest +0\.10 s +all reused  1800 frames reused", lines[1])
    assert re.fullmatch(r"  snippets +350\.00 s +7\.59 snippets/s  2657 computed, 891 reused", lines[2])
    # the split follows the stage named by the caller when given
    assert summary_lines(stages, 386.1, None, 1800, main_stage="merge")[0] == \
        "1800 frames: 1800 computed in this run (386.1 s, 4.66 frames/s)"


def test_summary_of_a_fully_reused_run_claims_no_rate():
    progress = Progress("json", stream=io.StringIO())
    for name, total, unit in (("ingest", 1800, "frames"), ("snippets", 3548, "snippets"), ("export", 1800, "frames")):
        progress.stage(name, total, unit=unit).advance(total, reused=True)
    lines = progress.summary(0.4, 1587.4, 1800, runs=4)
    assert lines[0] == ("1800 frames: all reused from earlier runs, nothing computed in this run (0.4 s); "
                        "1587.4 s across 4 runs")
    assert not re.search(r"\d frames/s|\d snippets/s", "\n".join(lines)), lines
    assert all("all reused" in line for line in lines[1:])
    event = json.loads(progress.stream.getvalue().splitlines()[-1])
    assert event["event"] == "summary" and event["fully_reused"] and event["rate"] is None
    assert (event["computed_frames"], event["reused_frames"]) == (0, 1800)


# ------------------------------------------------------------------ a real run, off and on a terminal

RUN = ("--res", "64", "--dtype", "fp32", "--device", "cpu", "--save", "npy", "--dilations", "1", "4",
       "--batch-size", "2", "--shots", "none")
STAGES = ("ingest", "snippets", "coalign", "merge", "normalize", "export")


def test_a_real_run_off_a_terminal_prints_plain_lines(clip, tiny_checkpoint, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(tmp_path / "out"),
                           "--checkpoint", str(tiny_checkpoint), *RUN], capture_output=True, text=True, timeout=600,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and not any("%|" in line for line in lines)  # no bars in a log
    for stage in STAGES:
        assert any(re.fullmatch(rf"\[{stage}\] start: ~?\d+ \w+( \(estimated\))?", line) for line in lines), stage
        assert any(re.fullmatch(rf"\[{stage}\] done in [\d.]+m?s: .*", line) for line in lines), stage
    assert all(PERIODIC.match(line) for line in lines if re.match(r"\[\w+\]  \d", line))
    assert re.match(r"24 frames: 24 computed in this run \([\d.]+ s, [\d.]+ frames/s\)", proc.stdout)


def test_a_real_run_on_a_terminal_shows_live_bars(clip, tiny_checkpoint, tmp_path):
    script = ("import sys\nfrom rdengine.cli import main\n"
              f"main({['process', str(clip), '-o', str(tmp_path / 'out'), '--checkpoint', str(tiny_checkpoint), *RUN]!r})")
    stdout, screen = run_on_terminal(script, timeout=300)
    frames = [f for f in re.split(r"[\r\n]+", screen) if f.strip()]
    assert "\r" in screen and "24 frames: 24 computed" in stdout, screen
    for stage in STAGES:
        assert any(re.search(rf"\[{stage}\] 100%\|.*\[done in", f) for f in frames), (stage, frames)
    assert any(re.search(r"\[\w+\] +\d{1,3}%\|", f) for f in frames)

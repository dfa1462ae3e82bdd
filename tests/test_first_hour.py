"""A new user's first hour: a failed start does not block the corrected command, interrupts say
how to resume, every option is explained, options are checked before any work, and small
commands (make-checkpoint, eval, inspect) never end in a traceback or a wrong answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import click
import numpy as np
import pytest

from rdengine.cli import cli as rdengine_cli, join_list_options
from rdengine.engine.testing.processes import default_sigint, run_rdengine

FAST = ("--res", "64", "--dtype", "fp32", "--device", "cpu", "--save", "npy", "--dilations", "1", "4",
        "--shots", "none")


def one_error_line(proc) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("error:")]  # click: "Error:"
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_a_failed_start_does_not_block_the_corrected_command(tmp_path, clip, tiny_checkpoint):
    out = tmp_path / "out"
    failed = run_rdengine("process", clip, "-o", out, "--checkpoint", "prs-eth/rollingdepth-v1-0", "--device", "cpu",
                          env={"HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"})
    assert "prs-eth/rollingdepth-v1-0" in one_error_line(failed)
    corrected = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, *FAST)
    assert corrected.returncode == 0, corrected.stderr
    assert np.load(out / "clip_depth.npy").shape[0] == 24
    # a store that did work is still protected: another config is refused without --overwrite
    other = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, *FAST, "--seed", "7")
    assert "--overwrite" in one_error_line(other)


def all_options(group: click.Group, prefix: str = "") -> list[tuple[str, click.Parameter]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_options(command, f"{prefix}{name} ")
            continue
        found += [(f"{prefix}{name}", p) for p in command.params if isinstance(p, click.Option)]
    return found


def test_every_option_of_every_command_has_help():
    undocumented = [f"{command} {param.opts[0]}" for command, param in all_options(rdengine_cli)
                    if not (param.help or "").strip()]
    assert not undocumented, undocumented


def test_process_help_states_defaults_presets_and_what_depth_is():
    shown = run_rdengine("process", "--help").stdout
    for needle in ("--refine-steps", "--dtype", "--cap-dilation", "--refine-start-dilation", "fast", "paper",
                   "full", "default", "--restore-res", "inverse depth", "[-1, 1]"):
        assert needle in shown, needle


@pytest.mark.parametrize("option,needle", [
    (("--colormap", "NoSuchMap"), "--colormap"), (("--fps", "0"), "--fps"), (("--device", "mps"), "mps"),
    (("--device", "meta"), "meta"), (("--seed", str(2**70)), "--seed"), (("--res", "100000"), "--res"),
    (("--device", "gpu7"), "--device"), (("--exr-dtype", "int8"), "--exr-dtype"),
])
def test_bad_option_values_are_refused_before_any_work(tmp_path, clip, tiny_checkpoint, option, needle):
    from click.testing import CliRunner

    out = tmp_path / "out"
    args = ["process", str(clip), "-o", str(out), "--checkpoint", str(tiny_checkpoint), *FAST, *option]
    result = CliRunner().invoke(rdengine_cli, join_list_options(args))  # in process: options fail before any work
    assert result.exit_code == 2, result
    lines = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_the_cpu_note_comes_after_the_input_check(tmp_path, tiny_checkpoint):
    proc = run_rdengine("process", tmp_path / "missing.mp4", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint,
                        "--device", "cpu")
    one_error_line(proc)
    assert "note:" not in proc.stderr


INTERRUPTER = """
import os, signal, sys
from rdengine.storage.run_store import RunStore
record = RunStore.mark_done
which = getattr(signal, sys.argv[1])

def mark_done(self, stage, unit, data=None):
    record(self, stage, unit, data)
    if stage == "snippets":
        os.kill(os.getpid(), which)

RunStore.mark_done = mark_done
from rdengine.cli import main
main(sys.argv[2:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["SIGINT", "SIGTERM"])
def test_an_interrupt_says_how_to_resume_and_the_rerun_finishes(tmp_path, clip, tiny_checkpoint, which):
    out = tmp_path / "out"
    args = ["process", str(clip), "-o", str(out), "--checkpoint", str(tiny_checkpoint), *FAST, "--batch-size", "2",
            "--unit-frames", "8"]
    stopped = subprocess.run([sys.executable, "-c", INTERRUPTER, which, *args], capture_output=True, text=True,
                             timeout=600, preexec_fn=default_sigint)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.rstrip().splitlines()[-1] == "interrupted: rerun the same command to resume"
    assert not (out / "run.zarr.lock").exists()
    resumed = run_rdengine(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "reused" in resumed.stdout
    assert np.isfinite(np.load(out / "clip_depth.npy")).all()


@pytest.mark.slow
def test_make_checkpoint_never_overwrites_silently(tmp_path):
    target = tmp_path / "ckpt"
    assert run_rdengine("make-checkpoint", target).returncode == 0
    weights = target / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.read_bytes()
    again = run_rdengine("make-checkpoint", target, "--seed", "3")
    assert "--overwrite" in one_error_line(again) and weights.read_bytes() == before
    assert run_rdengine("make-checkpoint", target, "--seed", "3", "--overwrite").returncode == 0
    assert weights.read_bytes() != before


def test_make_checkpoint_on_an_unwritable_path_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_rdengine("make-checkpoint", blocker / "ckpt")
    assert "cannot write a checkpoint" in one_error_line(proc)


def test_eval_refuses_a_constant_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pred.npy", rng.random((4, 16, 16)).astype(np.float32))
    np.save(tmp_path / "gt.npy", np.full((4, 16, 16), 2.5, np.float32))
    proc = run_rdengine("eval", tmp_path / "pred.npy", tmp_path / "gt.npy", "--depth-scale", "1")
    assert "constant" in one_error_line(proc)


@pytest.fixture(scope="module")
def finished(clip, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    proc = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, *FAST)
    assert proc.returncode == 0, proc.stderr
    return out


def test_inspect_reports_the_size_du_measures(finished):
    du = subprocess.run(["du", "-sb", "--apparent-size", finished / "run.zarr"], capture_output=True, text=True)
    allocated = subprocess.run(["du", "-sk", finished / "run.zarr"], capture_output=True, text=True)
    if du.returncode or allocated.returncode:
        pytest.skip("no du here")
    shown = run_rdengine("inspect", finished).stdout
    line = next(line for line in shown.splitlines() if line.startswith("size"))
    on_disk = float(line.split()[1]) * {"B": 1 / 1024, "KiB": 1, "MiB": 1024, "GiB": 1024**2}[line.split()[2]]
    directories = sum(1 for p in (finished / "run.zarr").rglob("*") if p.is_dir()) + 1
    du_files_kib = int(allocated.stdout.split()[0]) - directories * 4  # du also counts each folder's block
    assert abs(on_disk - du_files_kib) <= max(8, 0.02 * du_files_kib), (line, allocated.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["zarr.json", "depth/zarr.json"])
def test_damaged_store_metadata_is_named_by_inspect_and_repaired_by_process(finished, tmp_path, clip,
                                                                           tiny_checkpoint, damaged):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    (out / "run.zarr" / damaged).write_text('{"zarr_format": 3, "node_ty')
    shown = run_rdengine("inspect", out, "--verify")
    assert shown.returncode != 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "damaged store" in one_error_line(shown)
    rerun = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, *FAST)
    if damaged == "zarr.json":  # the run's own metadata: nothing to trust, the user is told how to start over
        assert "damaged store" in one_error_line(rerun) and "--overwrite" in one_error_line(rerun)
        return
    assert rerun.returncode == 0, rerun.stderr
    assert "damaged data" in rerun.stderr
    assert np.array_equal(np.load(out / "clip_depth.npy"), np.load(finished / "clip_depth.npy"))
    assert run_rdengine("inspect", out, "--verify").returncode == 0


def test_no_lock_file_after_a_clean_finish(finished):
    assert not (finished / "run.zarr.lock").exists()
    summary = json.loads((finished / "run.zarr" / "zarr.json").read_text())["attributes"]["info"]
    assert summary["runs"] == 1 and summary["seconds"] > 0

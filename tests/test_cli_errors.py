"""User mistakes end in one clear line, a non-zero exit and no traceback."""

from __future__ import annotations

import pytest

from rdengine.engine.testing.processes import run_rdengine


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file(tmp_path, tiny_checkpoint):
    missing = tmp_path / "nope.mp4"
    proc = run_rdengine("process", missing, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert_one_line_error(proc, "not found", str(missing))


def test_not_a_video(tmp_path, tiny_checkpoint):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    proc = run_rdengine("process", fake, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert_one_line_error(proc, str(fake))


def test_checkpoint_folder_not_found(tmp_path, clip):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", tmp_path / "no-such-ckpt")
    assert_one_line_error(proc, "checkpoint", "--checkpoint PATH")


def test_hub_unreachable_says_how_to_pass_a_local_folder(tmp_path, clip):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", "prs-eth/rollingdepth-v1-0",
                        env={"HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(proc, "prs-eth/rollingdepth-v1-0", "local folder", "--checkpoint PATH")


def test_dilations_without_one(tmp_path, clip, tiny_checkpoint):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint,
                        "--dilations", "10", "25")
    assert_one_line_error(proc, "must include 1")


def test_cuda_requested_but_absent(tmp_path, clip, tiny_checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--device", "cuda")
    assert_one_line_error(proc, "CUDA is not available")


def test_triton_on_cpu_without_interpreter(tmp_path, clip, tiny_checkpoint):
    proc = run_rdengine("process", clip, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--device", "cpu",
                        "--attention", "triton", env={"TRITON_INTERPRET": "0"})
    assert_one_line_error(proc, "TRITON_INTERPRET=1")

"""Never finish with wrong or missing depth: damaged inputs, non-finite values, bit rot, changed
inputs or weights, short re-decodes and odd streams, each with real files and the exact outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.errors import EngineError
from rdengine.engine.pipeline import process_video
from rdengine.engine.stages.export import InputFrames
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_frames, write_clip
from rdengine.storage.inputs import ArrayView
from rdengine.storage.run_store import read_summary
from rdengine.engine.testing.processes import run_rdengine

ENGINE = ("--checkpoint", None, "--res", "64", "--dtype", "fp32", "--device", "cpu", "--save", "npy",
          "--dilations", "1", "4", "--batch-size", "4", "--shots", "none")


def cli(*args, ckpt, env=None) -> subprocess.CompletedProcess:
    engine = [str(ckpt) if a is None else a for a in ENGINE]
    return run_rdengine(*args, *engine, env=env)


def assert_clean_failure(proc, *needles) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run(video, out, ckpt, **overrides):
    settings = dict(res=64, dtype="fp32", dilations=(1, 4), shots="none") | overrides
    cfg = resolve_config("fast", checkpoint=str(ckpt), **settings)
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy",), progress="quiet", keep_intermediates=True)
    return process_video(str(video), out, cfg, opts)


# ------------------------------------------------------------------ 1. damaged packets mid-stream


@pytest.mark.slow
def test_a_damaged_packet_mid_stream_costs_one_frame_and_is_reported(tmp_path, tiny_checkpoint):
    whole = write_clip(tmp_path / "whole.mp4", frames=48, width=64, height=48)
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 300] = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    proc = cli("process", damaged, "-o", tmp_path / "out", ckpt=tiny_checkpoint)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    depth = np.load(tmp_path / "out" / "damaged_depth.npy")
    assert 40 <= len(depth) < 48  # decoding went on past the damage: far more than the frames before it
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any("damaged.mp4" in w and ("damaged packet" in w or "concealed" in w or "of about" in w)
               for w in warnings)
    info = json.loads((tmp_path / "out" / "run.zarr" / "zarr.json").read_text())["attributes"]["info"]
    assert info["decoding"]["problems"]
    shown = run_rdengine("inspect", tmp_path / "out")
    assert "decoding" in shown.stdout


# ------------------------------------------------------------------ 2. non-finite values


def damaged_checkpoint(src: Path, dst: Path, scale: float | None = None, nan: bool = False,
                       fill: float | None = None) -> Path:
    """A copy of ``src`` whose VAE decoder is scaled by ``scale`` (overflow), holds a NaN, or has
    its last convolution filled with the finite ``fill`` (sums of such weights overflow float32)."""
    shutil.copytree(src, dst)
    weights = dst / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    for name in ("decoder.conv_in.weight", "decoder.conv_out.weight"):
        if scale is not None:
            tensors[name] = tensors[name] * scale
    if nan:
        tensors["decoder.conv_out.weight"][0, 0, 0, 0] = float("nan")
    if fill is not None:
        tensors["decoder.conv_out.weight"].fill_(fill)
    save_file(tensors, weights)
    return dst


def test_nan_weights_are_refused_at_load(tmp_path, tiny_checkpoint):
    ckpt = damaged_checkpoint(tiny_checkpoint, tmp_path / "nan", nan=True)
    proc = cli("process", write_clip(tmp_path / "c.mp4", frames=6), "-o", tmp_path / "out", ckpt=ckpt)
    assert_clean_failure(proc, "non-finite weights", "vae", "damaged")
    assert not (tmp_path / "out" / "run.zarr").exists()  # nothing started


def test_fp16_overflow_is_recomputed_in_float32(tmp_path, tiny_checkpoint):
    """Depth of magnitude ~1e5 overflows fp16 (max 65504) but not float32."""
    ckpt = damaged_checkpoint(tiny_checkpoint, tmp_path / "loud", scale=1e3)
    clip = write_clip(tmp_path / "c.mp4", frames=8, width=32, height=24)
    result = run(clip, tmp_path / "out", ckpt, dtype="fp16", res=32)
    depth = np.load(result.outputs["npy"])
    assert np.isfinite(depth).all() and depth.min() == -1 and depth.max() == 1


def test_depth_that_overflows_float32_stops_the_run_naming_the_unit(tmp_path, tiny_checkpoint):
    ckpt = damaged_checkpoint(tiny_checkpoint, tmp_path / "broken", fill=3e38)
    proc = cli("process", write_clip(tmp_path / "c.mp4", frames=6), "-o", tmp_path / "out", ckpt=ckpt)
    assert_clean_failure(proc, "non-finite depth", "snippet unit", "damaged")
    summary = read_summary(str(tmp_path / "out" / "run.zarr"))
    assert not summary.complete and not list((tmp_path / "out").glob("*.npy"))


# ------------------------------------------------------------------ 3. bit rot


@pytest.fixture(scope="module")
def kept(clip, tiny_checkpoint, tmp_path_factory):
    """A finished run that keeps every intermediate array, and its depth."""
    out = tmp_path_factory.mktemp("kept")
    proc = cli("process", clip, "-o", out, "--preset", "full", "--refine-steps", "2", "--keep-intermediates",
               "--unit-frames", "8", ckpt=tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr
    return out


def shard_files(store: Path) -> dict[str, Path]:
    """One data file (shard or chunk) of every array in the store."""
    files = {}
    for meta in sorted(store.rglob("zarr.json")):
        if json.loads(meta.read_text()).get("node_type") == "array":
            data = sorted(p for p in meta.parent.rglob("*") if p.is_file() and p.name != "zarr.json")
            files[meta.parent.relative_to(store).as_posix()] = data[len(data) // 2]
    return files


def flip_bit(path: Path, seed: int) -> None:
    data = bytearray(path.read_bytes())
    at = int(np.random.default_rng(seed).integers(len(data)))
    data[at] ^= 1 << int(np.random.default_rng(seed + 1).integers(8))
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_verify_finds_a_single_flipped_bit_in_every_array(kept, tmp_path):
    """The first array through a real process, the others through the same CLI in this process."""
    from click.testing import CliRunner

    from rdengine.cli import cli as rdengine_cli

    arrays = shard_files(kept / "run.zarr")
    assert {"rgb_latents", "depth", "snippets/b0000000/depth", "snippets/b0000000/samples", "refine/latents_0",
            "coalign/scales_g0", "frame", "time"} <= set(arrays)
    for k, (name, path) in enumerate(arrays.items()):
        copy = tmp_path / f"copy{k}"
        shutil.copytree(kept, copy)
        flip_bit(copy / "run.zarr" / path.relative_to(kept / "run.zarr"), seed=k)
        if k == 0:
            proc = run_rdengine("inspect", copy, "--verify")
            code, stderr = proc.returncode, proc.stderr
        else:
            result = CliRunner().invoke(rdengine_cli, ["inspect", str(copy), "--verify"])
            code, stderr = result.exit_code, result.stderr
        assert code == 1 and name in stderr and "Traceback" not in stderr, (name, stderr)
        shutil.rmtree(copy)


@pytest.mark.slow
def test_a_resumed_run_recomputes_damaged_data_instead_of_using_it(kept, clip, tiny_checkpoint, tmp_path):
    """A kill after the snippet stage, then bit rot in the snippet scratch and the RGB latents:
    the resumed run detects both when it reads them and ends with the uninterrupted bytes."""
    out = tmp_path / "run"
    args = ["process", clip, "-o", out, "--preset", "full", "--refine-steps", "2", "--keep-intermediates",
            "--unit-frames", "8"]
    killer = ("import os, signal, sys\nfrom rdengine.storage.run_store import RunStore\nrecord = RunStore.mark_done\n"
              "def mark_done(self, stage, unit, data=None):\n    if stage == 'coalign':\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n    record(self, stage, unit, data)\n"
              "RunStore.mark_done = mark_done\nfrom rdengine.cli import main\nmain(sys.argv[1:])\n")
    engine = [str(tiny_checkpoint) if a is None else a for a in ENGINE]
    proc = subprocess.run([sys.executable, "-c", killer, *map(str, args), *engine], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    for name in ("snippets/b0000000/depth", "rgb_latents"):
        flip_bit(shard_files(out / "run.zarr")[name], seed=3)
    resumed = cli(*args, ckpt=tiny_checkpoint)
    assert resumed.returncode == 0, resumed.stderr
    assert "damaged data" in resumed.stderr and "recomputed" in resumed.stderr
    assert (out / "clip_depth.npy").read_bytes() == (kept / "clip_depth.npy").read_bytes()
    assert run_rdengine("inspect", out, "--verify").returncode == 0


@pytest.mark.slow
def test_damaged_final_depth_of_a_released_run_is_recomputed(clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    first = cli("process", clip, "-o", out, ckpt=tiny_checkpoint)
    assert first.returncode == 0, first.stderr
    expected = np.load(next(out.glob("*_depth.npy")))
    (next(out.glob("*_depth.npy"))).unlink()  # a rerun exports again, reading the depth
    flip_bit(shard_files(out / "run.zarr")["depth"], seed=5)
    again = cli("process", clip, "-o", out, ckpt=tiny_checkpoint)
    assert again.returncode == 0 and "damaged data" in again.stderr, again.stderr
    np.testing.assert_array_equal(np.load(next(out.glob("*_depth.npy"))), expected)


# ------------------------------------------------------------------ 4. identity of input and weights


@pytest.mark.slow
def test_weights_replaced_in_place_are_a_different_model_and_path_spelling_is_not(clip, tiny_checkpoint,
                                                                                    tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    out = tmp_path / "run"
    assert cli("process", clip, "-o", out, ckpt=ckpt).returncode == 0
    respelled = cli("process", clip, "-o", out, ckpt=f"{tmp_path}/./ckpt/")  # same weights, other spelling
    assert respelled.returncode == 0 and "reused" in respelled.stdout + respelled.stderr, respelled.stderr
    weights = ckpt / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v * 1.01 for k, v in tensors.items()}, weights)
    assert_clean_failure(cli("process", clip, "-o", out, ckpt=ckpt), "checkpoint.weights", "--overwrite")


# ------------------------------------------------------------------ 5. exports trust no re-decode


def test_an_input_that_decodes_shorter_at_export_is_an_error():
    frames = InputFrames(lambda: (ArrayView(f) for f in np.zeros((10, 4, 4, 3), np.uint8)), 12, (4, 4), "clip.mp4")
    assert frames.chunk(0, 8).shape == (8, 4, 4, 3)
    with pytest.raises(EngineError, match="now decodes to 10 frames, but the run has 12"):
        frames.chunk(8, 12)
    longer = InputFrames(lambda: (ArrayView(f) for f in np.zeros((13, 4, 4, 3), np.uint8)), 12, (4, 4), "clip.mp4")
    with pytest.raises(EngineError, match="more than the run's 12"):
        longer.chunk(0, 12)
    again = InputFrames(lambda: (ArrayView(np.full((4, 4, 3), i, np.uint8)) for i in range(12)), 12, (4, 4), "c")
    assert again.chunk(6, 8)[0, 0, 0, 0] == 6 and again.chunk(2, 3)[0, 0, 0, 0] == 2  # a read back opens it again


# ------------------------------------------------------------------ 6. stream choice


def test_the_real_video_stream_is_chosen_over_a_still(tmp_path, tiny_checkpoint):
    path = tmp_path / "still_first.mkv"
    frames = synthetic_frames(12, 64, 48)
    with av.open(str(path), "w") as container:
        still = container.add_stream("mjpeg", rate=1)
        still.width, still.height, still.pix_fmt = 32, 32, "yuvj420p"
        video = container.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for packet in still.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in still.encode():
            container.mux(packet)
        for rgb in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    proc = cli("process", path, "-o", tmp_path / "out", ckpt=tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "out" / "still_first_depth.npy").shape == (12, 48, 64)


# ------------------------------------------------------------------ 7. resolution change mid-stream


def test_a_resolution_change_mid_stream_is_fitted_with_a_note(tmp_path, tiny_checkpoint):
    wide = encode_frames(tmp_path / "a.ts", synthetic_frames(10, 96, 54), fps=12, codec="libx264")
    square = encode_frames(tmp_path / "b.ts", synthetic_frames(10, 64, 64, seed=2), fps=12, codec="libx264")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(wide.read_bytes() + square.read_bytes())
    proc = cli("process", joined, "-o", tmp_path / "out", ckpt=tiny_checkpoint)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    depth = np.load(tmp_path / "out" / "joined_depth.npy")
    assert depth.shape == (20, 36, 64)  # 96x54 at --res 64; the 64x64 part fitted inside, aspect kept
    assert "size" in proc.stderr and "10" in proc.stderr  # the change is said, with its frame


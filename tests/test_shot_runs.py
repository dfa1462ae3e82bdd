"""Shot-aware runs on a real encoded edit of three scenes: cuts found while ingesting, no snippet
across a cut, and every shot processed exactly as if it were a video of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.eval.evaluate import evaluate_video
from rdengine.engine.facts import RunFacts
from rdengine.engine.latents import Geometry
from rdengine.engine.pipeline import process_video
from rdengine.engine.plan import make_plan
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_edit, synthetic_frames
from rdengine.engine.testing.synthetic_depth import render_inverse_depth

SHOTS, CUTS, W, H = (20, 20, 20), [20, 40], 96, 72


def lossless(path: Path, frames: np.ndarray) -> Path:
    """FFV1 codes every frame on its own: a shot decodes to the same pixels alone or in the edit."""
    return encode_frames(path, frames, fps=12, codec="ffv1", pix_fmt="yuv444p")


@pytest.fixture(scope="module")
def edit(tmp_path_factory):
    frames, cuts = synthetic_edit(SHOTS, W, H, seed=1)
    assert cuts == CUTS
    return frames, lossless(tmp_path_factory.mktemp("edit") / "edit.mkv", frames)


def process(video: Path, out: Path, ckpt: Path, **overrides):
    cfg = resolve_config("full", res=W, dtype="fp32", checkpoint=str(ckpt), dilations=(1, 25), refine_steps=2,
                         **overrides)
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy",), progress="quiet", keep_intermediates=True)
    result = process_video(str(video), out, cfg, opts)
    return cfg, opts, np.load(result.outputs["npy"]), zarr.open_group(str(result.store), mode="r")


@pytest.fixture(scope="module")
def shot_aware(edit, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("aware")
    return (out, *process(edit[1], out, tiny_checkpoint))


def test_cuts_are_found_and_no_snippet_crosses_one(shot_aware):
    out, cfg, opts, depth, store = shot_aware
    info = store.attrs["info"]
    assert len(info["cuts"]) == 2 and all(abs(a - b) <= 1 for a, b in zip(info["cuts"], CUTS))
    plan = make_plan(RunFacts.from_info(info), cfg, opts, 60, Geometry((72, 96)), 4, None, "cpu", out)
    assert [(s.start, s.stop) for s in plan.shots] == [(0, info["cuts"][0]), (info["cuts"][0], info["cuts"][1]),
                                                       (info["cuts"][1], 60)]
    for k, shot in enumerate(plan.shots):
        for g in (plan.groups[i] for i in plan.shot_groups[k]):
            frames = g.frame_table()
            assert frames.min() >= shot.start and frames.max() < shot.stop  # the 25-dilation is capped per shot
    doc = json.loads((out / "edit_shots.json").read_text())
    assert [(s["start"], s["end"], s["frames"]) for s in doc["shots"]] == [(s.start, s.stop, s.num_frames)
                                                                          for s in plan.shots]
    with Image.open(out / "edit_shots.png") as sheet:  # one RGB + depth tile per shot, side by side
        assert sheet.width > 3 * 2 * W and sheet.height < 2 * H + 40


def test_a_shot_does_not_depend_on_the_others(edit, shot_aware, tiny_checkpoint, tmp_path):
    frames, _ = edit
    other = frames.copy()
    other[:20] = synthetic_frames(20, W, H, seed=99)[:, ::-1]  # another first shot
    _, _, _, depth, store = shot_aware
    _, _, depth_b, store_b = process(lossless(tmp_path / "other.mkv", other), tmp_path / "out", tiny_checkpoint,
                                     shots=str(cut_list(tmp_path)))
    assert not np.allclose(depth_b[:20], depth[:20])
    for name in ("coalign/scales_g0", "coalign/shifts_g0", "coalign/scales_g1", "coalign/shifts_g1"):
        np.testing.assert_allclose(store_b[name][20:40], store[name][20:40], atol=1e-6)
    np.testing.assert_allclose(depth_b[20:], depth[20:], atol=1e-5)


def cut_list(folder: Path) -> Path:
    path = folder / "cuts.txt"
    path.write_text("# cuts of the edit\n20\n40\n")
    return path


def test_a_cut_list_gives_what_detection_gives(edit, shot_aware, tiny_checkpoint, tmp_path):
    _, _, _, depth, store = shot_aware
    _, _, listed, listed_store = process(edit[1], tmp_path, tiny_checkpoint, shots=str(cut_list(tmp_path)))
    assert listed_store.attrs["info"]["cuts"] == store.attrs["info"]["cuts"] == CUTS
    np.testing.assert_array_equal(listed, depth)


def test_shot_aware_scores_as_each_shot_run_alone(edit, shot_aware, tiny_checkpoint, tmp_path):
    frames, _ = edit
    out, _, _, depth, _ = shot_aware
    alone = np.concatenate([process(lossless(tmp_path / f"shot{k}.mkv", frames[a:a + n]), tmp_path / f"out{k}",
                                    tiny_checkpoint, shots="none")[2]
                            for k, (a, n) in enumerate(zip((0, 20, 40), SHOTS))])
    np.testing.assert_allclose(depth, alone, atol=1e-5)  # the same computation, shot by shot
    v, u = (np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W  # ground truth: the synthetic scene's depth
    np.save(tmp_path / "gt.npy", 1.0 / render_inverse_depth(np.arange(60), v.astype(np.float32), u.astype(np.float32)))
    np.save(tmp_path / "alone.npy", alone)
    (tmp_path / "alone_shots.json").write_text((out / "edit_shots.json").read_text())
    aware = evaluate_video(out / "run.zarr", tmp_path / "gt.npy", per_shot=True, depth_scale=1.0)
    separate = evaluate_video(tmp_path / "alone.npy", tmp_path / "gt.npy", per_shot=True, depth_scale=1.0)
    assert len(aware.fits) == 3 and aware.abs_rel <= 1.01 * separate.abs_rel

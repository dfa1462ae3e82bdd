"""End-to-end runs on a real encoded clip with a tiny checkpoint, each stage checked against SPEC.md."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import zarr

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.inspection import store_plan
from rdengine.engine.model import load_model
from rdengine.engine.pipeline import process_video
from rdengine.engine.stages.refine import refine_chunk, timesteps_kept
from rdengine.engine.stages.scratch import group_scratch
from rdengine.engine.snippets import SnippetGroup, plan_snippets
from rdengine.storage.inputs import open_input
from rdengine.storage.run_store import RunStore

RES = 64  # 24 frames of 64x48


def run(clip, ckpt, out, preset="fast", batch_size=4, save=("npy",), keep=False, scratch="auto", **overrides):
    cfg = resolve_config(preset, res=overrides.pop("res", RES), checkpoint=str(ckpt), **overrides)
    opts = ExecutionOptions(device="cpu", batch_size=batch_size, save=save, progress="quiet", keep_intermediates=keep,
                            scratch=scratch)
    return process_video(str(clip), out, cfg, opts)


def snippet_groups(store_path) -> list[np.ndarray]:
    """Every snippet group's scratch ``[N_g, L_g, ...]`` as stored (depth maps, or latents)."""
    store = RunStore(store_path, mode="r")
    _, plan = store_plan(store)
    return [group_scratch(store, plan, k) for k in range(len(plan.groups))]


@pytest.fixture(scope="module")
def fp32_run(clip, tiny_checkpoint, tmp_path_factory):
    """One fp32 run with dilations 1 and 10 (10 is capped to 7 for 24 frames), intermediates kept:
    the result, its store, and its snippet groups' depth ``[N_g, 3, 48, 64]``."""
    out = tmp_path_factory.mktemp("fp32_run")
    result = run(clip, tiny_checkpoint, out, dtype="fp32", dilations=(1, 10), save=("npy", "mp4", "sbs", "png16"),
                 keep=True)
    return result, zarr.open_group(str(result.store), mode="r"), snippet_groups(result.store)


# What each preset must do on 24 frames (SPEC table; cap: int(24 / 3) - 1 = 7):
# (snippet dtype, dilations of the snippet groups, refinement dilations)
PRESET_PLANS = {"fast": ("float16", [1, 7], []), "fast1024": ("float16", [1, 7], []),
                "full": ("float16", [1, 7, 7], [6, 5, 5, 4, 4, 3, 3, 2, 1, 1]),
                "paper": ("float32", [1, 10], [6, 5, 5, 4, 4, 3, 3, 2, 1, 1])}  # no cap: 25 cannot fit, dropped


@pytest.mark.parametrize("preset", list(PRESET_PLANS))
def test_every_preset_runs_end_to_end(preset, clip, tiny_checkpoint, tmp_path):
    result = run(clip, tiny_checkpoint, tmp_path, preset=preset, save=("npy", "mp4"), keep=True)
    depth = np.load(result.outputs["npy"])
    store = zarr.open_group(str(result.store), mode="r")
    np.testing.assert_array_equal(depth, store["depth"][:])
    assert depth.shape == (24, 48, 64) and depth.dtype == np.float32
    dtype, dilations, refinement = PRESET_PLANS[preset]
    groups = snippet_groups(result.store)
    assert [g.shape[:2] for g in groups] == [(24 - 2 * d, 3) for d in dilations]
    assert all(g.dtype == np.dtype(dtype) for g in groups)  # the preset's precision, computed as such
    assert [store[f"coalign/scales_g{k}"].shape for k in range(len(dilations))] == [(24 - 2 * d,) for d in dilations]
    _, plan = store_plan(RunStore(result.store, mode="r"))
    assert [g.dilation for g in plan.groups] == dilations
    assert plan.refine_dilations == [refinement]
    stages = {s["name"]: s for s in result.stages}
    if refinement:
        assert stages["refine"]["done"] == len(refinement) * 24  # every step over every frame
    if refinement:  # the refined depth is decoded from the last buffer and not renormalized
        assert ("refine/latents_0" in store) and not (depth.min() == -1 and depth.max() == 1)
    else:
        assert depth.min() == -1 and depth.max() == 1
    with av.open(str(result.outputs["mp4"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24


def test_depth_is_the_normalized_mean_of_aligned_observations(fp32_run):
    """SPEC merge + normalization, recomputed from the kept snippet depth and co-alignment."""
    _, store, scratch = fp32_run
    groups, _ = plan_snippets(24, (1, 10), (3, 3), cap=True)
    gmin = min(float(x.min()) for x in scratch)
    merged = np.zeros((24, 48, 64))
    for f in range(24):
        obs = []
        for k, g in enumerate(groups):
            s, t = store[f"coalign/scales_g{k}"][:], store[f"coalign/shifts_g{k}"][:]
            for i in range(g.count):
                for j, frame in enumerate(g.frames(i)):
                    if frame == f:
                        obs.append(s[i] * (scratch[k][i, j] - gmin) + t[i])
        merged[f] = np.mean(obs, axis=0)
    expected = (merged - merged.min()) / (merged.max() - merged.min()) * 2 - 1
    np.testing.assert_allclose(store["depth"][:], expected, atol=1e-6)
    assert store["depth"][:].min() == -1 and store["depth"][:].max() == 1


def test_snippet_depth_equals_direct_spec_computation(fp32_run, clip, tiny_checkpoint):
    """Snippet 5 of the dilation-7 group, recomputed by hand: shared noise, 1 DDIM step, decode."""
    result, store, scratch = fp32_run
    model = load_model(str(tiny_checkpoint), "cpu", "fp32", "sdpa")
    frames = np.stack(list(open_input(str(clip)).frames()))[[5, 12, 19]]
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 * 2 - 1  # 64x48 at res 64: no resize
    with torch.no_grad():
        moments = model.vae.quant_conv(model.vae.encoder(images))
        rgb = moments[:, :4] * 0.18215
        noise = torch.randn((1, 4, *rgb.shape[-2:]), generator=torch.Generator("cpu").manual_seed(2024))
        noisy = noise.repeat(3, 1, 1, 1)  # every frame starts from the same noise
        scheduler = type(model.scheduler).from_config(model.scheduler.config)
        scheduler.set_timesteps(1)
        assert int(scheduler.timesteps[0]) == 999
        v = model.unet(torch.cat([rgb, noisy], 1), scheduler.timesteps[0].repeat(3),
                       encoder_hidden_states=model.prompt_embedding.repeat(3, 1, 1),
                       cross_attention_kwargs={"num_frames": 3}).sample
        latents = scheduler.step(v, scheduler.timesteps[0], noisy).prev_sample
        decoded = model.vae.decoder(model.vae.post_quant_conv(latents / 0.18215)).mean(1)
    assert scratch[1].shape == (24 - 14, 3, 48, 64)
    np.testing.assert_allclose(scratch[1][5], decoded.numpy(), atol=2e-5)


def test_outputs_are_written(fp32_run):
    result, store, _ = fp32_run
    pngs = sorted(result.outputs["png16"].glob("*.png"))
    assert len(pngs) == 24
    from PIL import Image
    img = np.asarray(Image.open(pngs[3]))
    assert img.dtype == np.uint16 and img.shape == (48, 64)
    with av.open(str(result.outputs["sbs"])) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (128, 48)


def test_same_seed_same_bytes_and_other_seed_differs(clip, tiny_checkpoint, tmp_path, fp32_run):
    result, _, _ = fp32_run
    again = run(clip, tiny_checkpoint, tmp_path / "a", dtype="fp32", dilations=(1, 10))
    assert np.load(again.outputs["npy"]).tobytes() == np.load(result.outputs["npy"]).tobytes()
    other = run(clip, tiny_checkpoint, tmp_path / "b", dtype="fp32", dilations=(1, 10), seed=7)
    assert not np.array_equal(np.load(other.outputs["npy"]), np.load(result.outputs["npy"]))


def test_batch_size_one_equals_batch_size_eight(clip, tiny_checkpoint, tmp_path, fp32_run):
    _, _, scratch = fp32_run
    one_run = run(clip, tiny_checkpoint, tmp_path / "b1", dtype="fp32", dilations=(1, 10), batch_size=1, keep=True)
    eight_run = run(clip, tiny_checkpoint, tmp_path / "b8", dtype="fp32", dilations=(1, 10), batch_size=8, keep=True)
    one, eight = (zarr.open_group(str(r.store), mode="r") for r in (one_run, eight_run))
    for k, (a, b) in enumerate(zip(snippet_groups(one_run.store), snippet_groups(eight_run.store))):
        np.testing.assert_allclose(a, b, atol=1e-4)  # what batching touches: float rounding only
        np.testing.assert_allclose(a, scratch[k], atol=1e-4)
    # the fast co-alignment stops on a relative tolerance, so 1e-5 input differences may end it an
    # iteration or two apart: the final depth agrees to the solver's tolerance, not to rounding
    np.testing.assert_allclose(one["depth"][:], eight["depth"][:], atol=1e-3)


def test_refinement_chunks_with_halo_equal_one_whole_pass(fp32_run, tiny_checkpoint):
    _, store, _ = fp32_run
    model = load_model(str(tiny_checkpoint), "cpu", "fp32", "sdpa")
    scheduler, kept = timesteps_kept(model, 4)
    assert [int(t) for t in kept] == [499, 374, 249, 124]  # trailing spacing over 2R=8, second half
    group = SnippetGroup(dilation=3, length=3, num_frames=24)
    rgb = store["rgb_latents"]
    old = np.random.default_rng(0).standard_normal(rgb.shape).astype(np.float32)
    with torch.no_grad():
        whole, passes = refine_chunk(model, scheduler, group, rgb, old, kept[1], 0, 24, batch_size=5)
        parts = np.concatenate([refine_chunk(model, scheduler, group, rgb, old, kept[1], a, min(a + 7, 24), 3)[0]
                                for a in range(0, 24, 7)])
    assert passes == group.count * group.length  # UNet frames of one step over the whole group
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    assert not np.allclose(whole, old)


def test_coalign_streaming_past_the_memory_budget_gives_the_same_depth(clip, tiny_checkpoint, tmp_path, fp32_run):
    result, _, _ = fp32_run
    cfg = resolve_config("fast", res=RES, checkpoint=str(tiny_checkpoint), dtype="fp32", dilations=(1, 10))
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy",), progress="quiet", coalign_memory=2048)
    streamed = process_video(str(clip), tmp_path, cfg, opts)
    assert np.load(streamed.outputs["npy"]).tobytes() == np.load(result.outputs["npy"]).tobytes()


def test_latent_scratch_gives_the_depth_of_full_resolution_scratch(clip, tiny_checkpoint, tmp_path, fp32_run):
    """Latents decoded again at merge time are the maps the snippet stage decoded (up to float
    rounding: the decoder sees other batches)."""
    result, _, _ = fp32_run
    latent = run(clip, tiny_checkpoint, tmp_path, dtype="fp32", dilations=(1, 10), scratch="latent", keep=True)
    store = zarr.open_group(str(latent.store), mode="r")
    units = [k for k, v in store.members(max_depth=None) if isinstance(v, zarr.Array) and k.startswith("snippets/")]
    assert units and all(store[k].shape[1:] == (4, 6, 8) for k in units if k.endswith("/latent"))
    assert not any(k.endswith("/depth") for k in units)  # latents, not depth maps
    np.testing.assert_allclose(np.load(latent.outputs["npy"]), np.load(result.outputs["npy"]), atol=2e-5)


def test_intermediates_are_released_once_used(clip, tiny_checkpoint, tmp_path):
    result = run(clip, tiny_checkpoint, tmp_path, preset="full", dtype="fp32", dilations=(1, 4), refine_steps=2)
    store = zarr.open_group(str(result.store), mode="r")
    arrays = sorted(k for k, v in store.members(max_depth=None) if isinstance(v, zarr.Array))
    assert arrays == ["coalign/scales_g0", "coalign/scales_g1", "coalign/shifts_g0", "coalign/shifts_g1", "depth",
                      "frame", "time"]
    assert set(store.attrs["info"]["released"]) == {"rgb_latents", "snippets", "refine/latents_0", "refine/latents_1"}

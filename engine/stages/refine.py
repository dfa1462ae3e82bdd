"""Refinement stage: R coarse-to-fine denoising sweeps over the co-aligned video latents.

``refine-encode`` encodes the normalized ``depth`` (3 channels) and noises it to the first
kept timestep into ``refine/latents_0``; step ``i`` reads buffer ``i % 2`` and writes
``(i+1) % 2`` (``[T, 4, h, w]``, compute precision), one unit of frames at a time: a unit
``[a, b)`` runs every snippet touching it (a halo of ``(L-1)d`` frames each side) from the
old latents, and each frame's new latent is the mean over its snippets (uncovered frames
keep the old latent). ``refine-decode`` decodes the last buffer into ``depth``, in place
of the co-aligned depth (which the encode has consumed). No renormalization.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import RunStore
from ..denoise import denoise_step, initial_noise, make_scheduler
from ..execution import Executor, UnitContext
from ..latents import decode_depth, encode
from ..model import TORCH_DTYPES, Model
from ..plan import RunPlan
from ..progress import Progress
from ..snippets import SnippetGroup
from .chunks import pending_chunks, time_chunks

VAE_BATCH = 8  # frames per VAE call


def timesteps_kept(model: Model, steps: int) -> tuple:
    """Scheduler over ``2R`` steps and its second half of timesteps (the R refinement steps)."""
    scheduler = make_scheduler(model, 2 * steps)
    return scheduler, scheduler.timesteps[steps:]


def refine_chunk(model: Model, scheduler, group: SnippetGroup, rgb, old, timestep: torch.Tensor,
                 first: int, stop: int, batch_size: int, exact_dtype: str | None = None) -> np.ndarray:
    """New latents of frames ``[first, stop)`` (global, inside the group's frames): the mean of
    one step over every snippet of ``group`` touching them.

    Each frame's sum runs over its snippets in ascending order, in float64, or in
    ``exact_dtype`` (``--reproduce``: the published fp16/fp32 accumulation).
    """
    halo = (group.length - 1) * group.dilation
    lo, hi = max(0, first - group.offset - halo), min(group.count, stop - group.offset)  # snippets touching
    w0 = group.offset + lo  # the frames they read: [w0, w1)
    w1 = min(group.stop, max(stop, group.offset + hi + halo))
    rgb_w = torch.from_numpy(np.asarray(rgb[w0:w1]))
    old_w = torch.from_numpy(np.asarray(old[w0:w1]))
    dtype = torch.float64 if exact_dtype is None else TORCH_DTYPES[exact_dtype]
    total = torch.zeros(stop - first, *old_w.shape[1:], dtype=dtype)
    count = torch.zeros(stop - first, dtype=torch.int32)
    for at in range(lo, hi, batch_size):
        table = torch.from_numpy(group.frame_table(at, min(at + batch_size, hi)))
        local = table - w0
        new = denoise_step(model, scheduler, rgb_w[local].to(model.device), old_w[local].to(model.device),
                           timestep).cpu().to(dtype)
        for frames, latents in zip(table, new):  # snippet by snippet, in ascending order
            inside = (frames >= first) & (frames < stop)
            idx = frames[inside] - first
            total[idx] += latents[inside]
            count[idx] += 1
    mean = total / count.to(dtype)[:, None, None, None]
    keep = old_w[first - w0:stop - w0]
    return torch.where(count[:, None, None, None] > 0, mean.float(), keep.float()).numpy()


def refine(store: RunStore, executor: Executor, plan: RunPlan, seed: int, progress: Progress,
           exact_dtype: str | None = None) -> None:
    """Encode, run every refinement step (each step's units after the previous step's), then
    decode the final latents into ``depth``."""
    steps, t, unit = len(plan.refine_dilations[0]), plan.num_frames, plan.frame_unit
    if all(store.is_done(layout.REFINE_DECODE, layout.chunk_unit(a)) for a, _ in time_chunks(t, unit)):
        progress.stage(layout.REFINE_DECODE, t).advance(t, reused=True)
        return
    for index in (0, 1):  # created here: tasks only write their shards
        store.require(layout.refine_latents(index), (t, 4, *plan.geometry.latent), executor.facts.storage_dtype,
                      layout.LATENT_DIMS, unit)
    timer = progress.stage(layout.REFINE_ENCODE, t)
    pending = list(pending_chunks(store, layout.REFINE_ENCODE, timer, t, unit))
    for _ in executor.map(refine_encode_unit, pending, plan, seed, steps, timer=timer):
        pass
    for i in range(steps):
        dilations = sorted({schedule[i] for schedule in plan.refine_dilations})
        timer = progress.stage(f"refine-{i + 1}/{steps} d={'/'.join(map(str, dilations))}", t)
        pending = list(pending_chunks(store, layout.REFINE, timer, t, unit, functools.partial(layout.refine_unit, i)))
        for _ in executor.map(refine_step_unit, pending, plan, i, steps, exact_dtype, timer=timer):
            pass
    timer = progress.stage(layout.REFINE_DECODE, t)
    pending = list(pending_chunks(store, layout.REFINE_DECODE, timer, t, unit))
    for _ in executor.map(refine_decode_unit, pending, plan, steps, timer=timer):
        pass


def refine_encode_unit(ctx: UnitContext, chunk: tuple[int, int, str], plan: RunPlan, seed: int, steps: int) -> None:
    """Task: encode the normalized depth of ``[first, stop)`` (3 channels) and noise it to the first kept timestep."""
    first, stop, unit_id = chunk
    model, geometry = ctx.model, plan.geometry
    scheduler, kept = timesteps_kept(model, steps)
    noise = initial_noise(model, geometry.latent, seed)
    with torch.inference_mode():
        depth = torch.from_numpy(np.asarray(ctx.store.array(layout.DEPTH)[first:stop]))
        noisy = []
        for a in range(0, stop - first, VAE_BATCH):
            maps = depth[a:a + VAE_BATCH].to(model.device, model.dtype)[:, None].expand(-1, 3, -1, -1)
            latents = encode(model.vae, geometry.to_vae(maps))
            noisy.append(scheduler.add_noise(latents, noise.expand_as(latents), kept[0]))
        latents = torch.cat(noisy).to(model.storage_torch_dtype).cpu().numpy()
    ctx.store.array(layout.refine_latents(0)).write(first, latents)
    ctx.done(layout.REFINE_ENCODE, unit_id)
    ctx.advance(stop - first)


def refine_step_unit(ctx: UnitContext, chunk: tuple[int, int, str], plan: RunPlan, i: int, steps: int,
                     exact_dtype: str | None) -> None:
    """Task: step ``i`` for frames ``[first, stop)``, from buffer ``i % 2`` into ``(i + 1) % 2``."""
    first, stop, unit_id = chunk
    model, store = ctx.model, ctx.store
    scheduler, kept = timesteps_kept(model, steps)
    groups = [SnippetGroup(dilation=schedule[i], length=min(plan.refine_length, shot.num_frames),
                           num_frames=shot.num_frames, offset=shot.start)
              for shot, schedule in zip(plan.shots, plan.refine_dilations)]  # snippets stay in their shot
    with torch.inference_mode():
        new = np.concatenate([refine_chunk(model, scheduler, groups[k], store.array(layout.RGB_LATENTS),
                                           store.array(layout.refine_latents(i % 2)), kept[i], a, b,
                                           plan.batch_size, exact_dtype)
                              for k, a, b in plan.segments(first, stop)])
    store.array(layout.refine_latents((i + 1) % 2)).write(first, new.astype(model.storage_dtype))
    ctx.done(layout.REFINE, unit_id)
    ctx.advance(stop - first)


def refine_decode_unit(ctx: UnitContext, chunk: tuple[int, int, str], plan: RunPlan, steps: int) -> None:
    """Task: decode the final latents of ``[first, stop)`` into ``depth``."""
    first, stop, unit_id = chunk
    model = ctx.model
    with torch.inference_mode():
        z = torch.from_numpy(np.asarray(ctx.store.array(layout.refine_latents(steps % 2))[first:stop]))
        z = z.to(model.device, model.dtype)
        depth = torch.cat([decode_depth(model.vae, z[a:a + VAE_BATCH], plan.geometry)
                           for a in range(0, len(z), VAE_BATCH)])
    ctx.store.array(layout.DEPTH).write(first, depth.float().cpu().numpy())
    ctx.done(layout.REFINE_DECODE, unit_id)
    ctx.advance(stop - first)

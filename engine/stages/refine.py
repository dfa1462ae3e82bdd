"""Refinement stage: R coarse-to-fine denoising sweeps over the co-aligned video latents.

Shot by shot: ``refine-encode`` encodes the shot's normalized ``depth`` (3 channels) and
noises it to the first kept timestep into ``refine/latents_0``; step ``i`` reads buffer
``i % 2`` and writes ``(i+1) % 2`` (``[T, 4, h, w]``, compute precision), one unit (the shot's
part of a shard) at a time: a unit ``[a, b)`` runs every snippet of the shot touching it (a
halo of ``(L-1)d`` frames each side) from the old latents, and each frame's new latent is
the mean over its snippets (uncovered frames keep the old latent). ``refine-decode`` decodes
the last buffer into ``depth``, in place of the co-aligned depth (which the encode has
consumed). No renormalization.
"""

from __future__ import annotations

import numpy as np
import torch

from ...storage import layout
from ..denoise import denoise_step, initial_noise, make_scheduler
from ..execution import UnitContext
from ..latents import decode_depth, encode
from ..model import TORCH_DTYPES, Model
from ..plan import RunPlan
from ..run_context import RunContext
from ..shots.model import Shot
from ..snippets import SnippetGroup
from .merge import pending_segments

VAE_BATCH = 8  # frames per VAE call


def timesteps_kept(model: Model, steps: int) -> tuple:
    """Scheduler over ``2R`` steps and its second half of timesteps (the R refinement steps)."""
    scheduler = make_scheduler(model, 2 * steps)
    return scheduler, scheduler.timesteps[steps:]


def refine_chunk(model: Model, scheduler, group: SnippetGroup, rgb, old, timestep: torch.Tensor,
                 first: int, stop: int, batch_size: int, exact_dtype: str | None = None) -> tuple[np.ndarray, int]:
    """New latents of frames ``[first, stop)`` (global, inside the group's frames): the mean of
    one step over every snippet of ``group`` touching them; and the UNet frames that took.

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
    return torch.where(count[:, None, None, None] > 0, mean.float(), keep.float()).numpy(), (hi - lo) * group.length


def refine_arrays(ctx: RunContext) -> None:
    """The two latent buffers ``[T, 4, h, w]`` (created here: tasks only write their rows)."""
    plan = ctx.plan
    for index in (0, 1):
        ctx.store.require(layout.refine_latents(index), (plan.num_frames, 4, *plan.geometry.latent),
                          ctx.executor.facts.storage_dtype, layout.LATENT_DIMS, plan.frame_unit)


def refine_encode_shot(ctx: RunContext, shot: Shot) -> None:
    """Encode the shot's normalized depth and noise it to the first kept timestep (buffer 0)."""
    pending = pending_segments(ctx.store, layout.REFINE_ENCODE, ctx.plan, shot)
    if pending:
        refine_arrays(ctx)
    for _ in ctx.executor.map(refine_encode_unit, pending, ctx.plan, ctx.cfg.seed, ctx.plan.refine_steps,
                              timer=ctx.timers[layout.REFINE_ENCODE]):
        pass


def refine_steps_shot(ctx: RunContext, shot: Shot) -> None:
    """Every refinement step of the shot, each step's units after the previous step's."""
    plan, store = ctx.plan, ctx.store
    steps = plan.refine_steps
    for i in range(steps):
        pending = [(a, b, layout.refine_unit(i, a)) for a, b in plan.segments(shot)
                   if not store.is_done(layout.REFINE, layout.refine_unit(i, a))]
        for _ in ctx.executor.map(refine_step_unit, pending, plan, shot.index, i, steps, ctx.cfg.exact_dtype,
                                  timer=ctx.timers[layout.REFINE]):
            pass


def refine_decode_shot(ctx: RunContext, shot: Shot) -> None:
    """Decode the shot's final latents into ``depth``."""
    pending = pending_segments(ctx.store, layout.REFINE_DECODE, ctx.plan, shot)
    for _ in ctx.executor.map(refine_decode_unit, pending, ctx.plan, ctx.plan.refine_steps,
                              timer=ctx.timers[layout.REFINE_DECODE]):
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
    ctx.done(layout.REFINE_ENCODE, unit_id, {"work": {"encode": stop - first}})
    ctx.advance(stop - first)


def refine_step_unit(ctx: UnitContext, chunk: tuple[int, int, str], plan: RunPlan, shot: int, i: int, steps: int,
                     exact_dtype: str | None) -> None:
    """Task: step ``i`` for frames ``[first, stop)`` of shot ``shot``, from buffer ``i % 2`` into ``(i + 1) % 2``."""
    first, stop, unit_id = chunk
    model, store = ctx.model, ctx.store
    scheduler, kept = timesteps_kept(model, steps)
    s = plan.shots[shot]  # snippets stay in their shot
    group = SnippetGroup(dilation=plan.refine_dilations[shot][i], length=min(plan.refine_length, s.num_frames),
                         num_frames=s.num_frames, offset=s.start)
    with torch.inference_mode():
        new, passes = refine_chunk(model, scheduler, group, store.array(layout.RGB_LATENTS),
                                   store.array(layout.refine_latents(i % 2)), kept[i], first, stop,
                                   plan.batch_size, exact_dtype)
    store.array(layout.refine_latents((i + 1) % 2)).write(first, new.astype(model.storage_dtype))
    ctx.done(layout.REFINE, unit_id, {"work": {"unet": passes}})
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
    frames = depth.float().cpu().numpy()
    ctx.store.array(layout.DEPTH).write(first, frames)
    ctx.done(layout.REFINE_DECODE, unit_id, {"range": [float(frames.min()), float(frames.max())],
                                             "work": {"decode": stop - first}})
    ctx.advance(stop - first)

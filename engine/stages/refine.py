"""Refinement stage: R coarse-to-fine denoising sweeps over the co-aligned video latents.

Latents live in two store buffers, ``refine/latents_0`` and ``refine/latents_1``
``[T, 4, h, w]`` float32: step ``i`` reads buffer ``i % 2`` and writes ``(i+1) % 2``.
Each step walks time in chunks; a chunk ``[a, b)`` runs every snippet touching it (a
halo of ``(L-1)d`` frames on each side) from the old latents, and each frame's new
latent is the mean over its snippets (uncovered frames keep the old latent).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import RunStore
from ..denoise import denoise_step, make_scheduler
from ..latents import Geometry, decode_depth, encode
from .chunks import pending_chunks
from ..model import TORCH_DTYPES, Model
from ..progress import Progress
from .ingest import stored_geometry
from ..snippets import SnippetGroup

REFINE_CHUNK = 64
DECODE_CHUNK = 8


def timesteps_kept(model: Model, steps: int) -> tuple:
    """Scheduler over ``2R`` steps and its second half of timesteps (the R refinement steps)."""
    scheduler = make_scheduler(model, 2 * steps)
    return scheduler, scheduler.timesteps[steps:]


def encode_aligned(store: RunStore, model: Model, noise: torch.Tensor, timestep: torch.Tensor,
                   scheduler, geometry: Geometry, progress: Progress) -> None:
    """Encode ``aligned`` depth (3 channels) and noise it to the first kept timestep -> buffer 0."""
    src = store.array(layout.ALIGNED)
    t = src.shape[0]
    h, w = store.info["latent_size"]
    out = store.require(layout.refine_latents(0), (t, 4, h, w), (REFINE_CHUNK, 4, h, w))
    timer = progress.stage(layout.REFINE_ENCODE, t)
    for first, stop, unit in pending_chunks(store, layout.REFINE_ENCODE, timer, t, REFINE_CHUNK):
        depth = torch.from_numpy(np.asarray(src[first:stop])).to(model.device, model.dtype)
        latents = encode(model.vae, geometry.to_vae(depth[:, None].expand(-1, 3, -1, -1)))
        noisy = scheduler.add_noise(latents, noise.expand_as(latents), timestep)
        out[first:stop] = noisy.float().cpu().numpy()
        store.mark_done(layout.REFINE_ENCODE, unit)
        timer.advance(stop - first)


def refine_chunk(model: Model, scheduler, group: SnippetGroup, rgb, old, timestep: torch.Tensor,
                 first: int, stop: int, batch_size: int, exact_dtype: str | None = None) -> np.ndarray:
    """New latents of frames ``[first, stop)``: mean of one step over every snippet touching them.

    Each frame's sum runs over its snippets in ascending order, in float64, or in
    ``exact_dtype`` (``--reproduce``: the published fp16/fp32 accumulation).
    """
    halo = (group.length - 1) * group.dilation
    lo, hi = max(0, first - halo), min(group.count, stop)
    window_stop = min(group.num_frames, max(stop, hi + halo))
    rgb_w = torch.from_numpy(np.asarray(rgb[lo:window_stop]))
    old_w = torch.from_numpy(np.asarray(old[lo:window_stop]))
    dtype = torch.float64 if exact_dtype is None else TORCH_DTYPES[exact_dtype]
    total = torch.zeros(stop - first, *old_w.shape[1:], dtype=dtype)
    count = torch.zeros(stop - first, dtype=torch.int32)
    for at in range(lo, hi, batch_size):
        table = torch.from_numpy(group.frame_table(at, min(at + batch_size, hi)))
        local = table - lo
        new = denoise_step(model, scheduler, rgb_w[local].to(model.device), old_w[local].to(model.device),
                           timestep).cpu().to(dtype)
        for frames, latents in zip(table, new):  # snippet by snippet, in ascending order
            inside = (frames >= first) & (frames < stop)
            idx = frames[inside] - first
            total[idx] += latents[inside]
            count[idx] += 1
    mean = total / count.to(dtype)[:, None, None, None]
    keep = old_w[first - lo:stop - lo]
    return torch.where(count[:, None, None, None] > 0, mean.float(), keep.float()).numpy()


def refine(store: RunStore, model: Model, dilations: list[int], length: int, noise: torch.Tensor,
           batch_size: int, progress: Progress, exact_dtype: str | None = None) -> None:
    """Run all refinement steps, then decode the final latents into ``depth [T, H, W]``."""
    steps = len(dilations)
    scheduler, kept = timesteps_kept(model, steps)
    geometry = stored_geometry(store.info)
    encode_aligned(store, model, noise, kept[0], scheduler, geometry, progress)
    num_frames = store.info["num_frames"]
    rgb = store.array(layout.RGB_LATENTS)
    first_buffer = store.array(layout.refine_latents(0))
    buffers = [first_buffer, store.require(layout.refine_latents(1), first_buffer.shape, first_buffer.chunks)]
    with torch.inference_mode():
        for i, (dilation, timestep) in enumerate(zip(dilations, kept)):
            group = SnippetGroup(dilation=dilation, length=length, num_frames=num_frames)
            old, new = buffers[i % 2], buffers[(i + 1) % 2]
            stage = f"refine-{i + 1}/{steps} d={dilation}"
            timer = progress.stage(stage, num_frames)
            step_unit = functools.partial(layout.refine_unit, i)
            for first, stop, unit in pending_chunks(store, layout.REFINE, timer, num_frames, REFINE_CHUNK, step_unit):
                new[first:stop] = refine_chunk(model, scheduler, group, rgb, old, timestep, first, stop, batch_size,
                                               exact_dtype)
                store.mark_done(layout.REFINE, unit)
                timer.advance(stop - first)
        decode_final(store, model, buffers[steps % 2], geometry, progress)


def decode_final(store: RunStore, model: Model, latents, geometry: Geometry, progress: Progress) -> None:
    """Decode refined latents chunkwise into ``depth [T, H, W]`` (no renormalization)."""
    h, w = geometry.depth
    t = latents.shape[0]
    out = store.require(layout.DEPTH, (t, h, w), (DECODE_CHUNK, h, w))
    timer = progress.stage(layout.REFINE_DECODE, t)
    for first, stop, unit in pending_chunks(store, layout.REFINE_DECODE, timer, t, out.chunks[0]):
        z = torch.from_numpy(np.asarray(latents[first:stop])).to(model.device, model.dtype)
        out[first:stop] = decode_depth(model.vae, z, geometry).float().cpu().numpy()
        store.mark_done(layout.REFINE_DECODE, unit)
        timer.advance(stop - first)

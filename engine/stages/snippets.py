"""Snippet stage: the device worker runs every scheduled batch and commits snippet depth.

Per group ``k`` it writes ``snippets/g{k} [N_k, L_k, H, W]`` (one chunk per frame of a
snippet; float16 when computing in fp16, else float32) and ``samples/g{k}
[N_k, L_k, P_h, P_w]`` float32, the strided copy co-alignment reads. Each batch is a
unit whose record holds the minimum depth of its snippets (for the global minimum).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import RowCache
from ...storage.run_store import RunStore
from ..coalign import sample_pixels
from ..denoise import denoise_step, initial_noise, make_scheduler
from ..latents import decode_depth
from ..model import Model
from ..overlap import run_overlapped
from .ingest import stored_geometry
from ..progress import Progress
from ..batching import SnippetBatch
from ..snippets import SnippetGroup

STAGE = layout.SNIPPETS
DECODE_BATCH = 8


class DeviceTimer:
    """Opt-in timer of the worker (``rdengine bench``): time of the UNet step and of the VAE decode.

    On CUDA it records events around each part (no extra synchronization while the stage
    runs; ``seconds`` synchronizes once at the end); on CPU it reads the wall clock.
    ``batches`` holds ``(snippets, length, latent h, latent w)`` per UNet call.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.spans: dict[str, list] = {"unet": [], "decode": []}
        self.batches: list[tuple[int, int, int, int]] = []

    def stamp(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def add(self, part: str, start, end) -> None:
        self.spans[part].append((start, end))

    def seconds(self, part: str) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(a.elapsed_time(b) for a, b in self.spans[part]) / 1000.0
        return sum(b - a for a, b in self.spans[part])


def snippet_dtype(model: Model) -> str:
    """Storage dtype of snippet depth: the decoder's own precision, losslessly."""
    return "float16" if model.dtype == torch.float16 else "float32"


def snippet_arrays(store: RunStore, groups: list[SnippetGroup], size: tuple[int, int], dtype: str):
    """Create (or reopen) the full-resolution and sampled snippet arrays of every group."""
    h, w = size
    ph, pw = sample_pixels(np.zeros((1, h, w))).shape[-2:]
    full = [store.require(layout.snippet_depth(k), (g.count, g.length, h, w), (1, 1, h, w), dtype)
            for k, g in enumerate(groups)]
    samples = [store.require(layout.snippet_samples(k), (g.count, g.length, ph, pw), (1, g.length, ph, pw))
               for k, g in enumerate(groups)]
    return full, samples


def global_minimum(store: RunStore) -> float:
    """Minimum over all snippet depths, from the batch records."""
    return float(min(r["min"] for r in store.done_units(STAGE).values()))


def infer_snippets(store: RunStore, model: Model, groups: list[SnippetGroup], batches: list[SnippetBatch],
                   seed: int, progress: Progress, device_timer: DeviceTimer | None = None) -> float:
    """Run the scheduled ``batches`` not yet done; returns the global minimum depth.

    ``device_timer``: times the UNet step and the VAE decode of every batch (benchmarks).
    """
    info = store.info
    geometry = stored_geometry(info)
    size, latent_size = geometry.depth, geometry.latent
    full, samples = snippet_arrays(store, groups, size, snippet_dtype(model))
    store_dtype = getattr(torch, snippet_dtype(model))
    timer = progress.stage(STAGE, sum(g.count for g in groups), unit="snippets")
    todo = []
    for batch in batches:
        if store.is_done(STAGE, batch.unit):
            timer.advance(len(batch.members), reused=True)
        else:
            todo.append(batch)
    if todo:
        window = max((g.length - 1) * g.dilation for g in groups) + max(len(b.members) for b in batches)
        rgb_latents = store.array(layout.RGB_LATENTS)
        cache = RowCache(rgb_latents, capacity=window // rgb_latents.chunks[0] + 3)
        noise = initial_noise(model, latent_size, seed)
        scheduler = make_scheduler(model, 1)
        timestep = scheduler.timesteps[0]
        step_at = int(timestep)  # the scheduler indexes host tables: a host int avoids a device sync
        cuda = model.device.type == "cuda"
        if cuda:
            model.vae.to(memory_format=torch.channels_last)

        def load(batch: SnippetBatch) -> torch.Tensor:
            frames = np.stack([groups[k].frames(i) for k, i in batch.members])
            rgb = torch.from_numpy(cache.rows(frames))
            return rgb.pin_memory() if cuda else rgb  # pinned: the copy to the device is truly async

        def compute(batch: SnippetBatch, rgb: torch.Tensor):
            t0 = device_timer.stamp() if device_timer else None
            rgb = rgb.to(model.device, non_blocking=True)
            start = noise.expand(*rgb.shape[:2], -1, -1, -1)
            latents = denoise_step(model, scheduler, rgb, start, timestep, step_at=step_at)
            t1 = device_timer.stamp() if device_timer else None
            flat = latents.reshape(-1, *latents.shape[2:])
            depth = torch.cat([decode_depth(model.vae, flat[i:i + DECODE_BATCH], geometry)
                               for i in range(0, flat.shape[0], DECODE_BATCH)])
            depth = depth.reshape(*latents.shape[:2], *size).to(store_dtype)  # lossless: see snippet_dtype
            if device_timer:
                device_timer.add("unet", t0, t1)
                device_timer.add("decode", t1, device_timer.stamp())
                device_timer.batches.append((rgb.shape[0], rgb.shape[1], *rgb.shape[-2:]))
            if not cuda:
                return depth.numpy(), None
            # Copy back into pinned memory without blocking this thread; the writer waits on the event.
            host = torch.empty(depth.shape, dtype=depth.dtype, pin_memory=True)
            host.copy_(depth, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            return host, done

        def write(batch: SnippetBatch, result) -> None:
            depth, done = result
            if done is not None:
                done.synchronize()
                depth = depth.numpy()
            for (k, i), d in zip(batch.members, depth):
                full[k][i] = d.astype(full[k].dtype)
                samples[k][i] = sample_pixels(d)
            store.mark_done(STAGE, batch.unit, {"min": float(depth.min())})
            timer.advance(len(batch.members))

        with torch.inference_mode():
            run_overlapped(todo, load, compute, write)
    return global_minimum(store)

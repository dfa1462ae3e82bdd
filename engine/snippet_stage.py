"""Snippet stage: the device worker runs every scheduled batch and commits snippet depth.

Per group ``k`` it writes ``snippets/g{k} [N_k, L_k, H, W]`` (one chunk per frame of a
snippet; float16 when computing in fp16, else float32) and ``samples/g{k}
[N_k, L_k, P_h, P_w]`` float32, the strided copy co-alignment reads. Each batch is a
unit whose record holds the minimum depth of its snippets (for the global minimum).
"""

from __future__ import annotations

import numpy as np
import torch

from ..storage.chunk_cache import RowCache
from ..storage.run_store import RunStore
from .coalign import sample_pixels
from .denoise import denoise_step, initial_noise, make_scheduler
from .latents import decode_depth
from .model import Model
from .overlap import run_overlapped
from .progress import Progress
from .scheduler import SnippetBatch, plan_batches
from .snippets import SnippetGroup

STAGE = "snippets"
DECODE_BATCH = 8


def snippet_dtype(model: Model) -> str:
    """Storage dtype of snippet depth: the decoder's own precision, losslessly."""
    return "float16" if model.dtype == torch.float16 else "float32"


def snippet_arrays(store: RunStore, groups: list[SnippetGroup], size: tuple[int, int], dtype: str):
    """Create (or reopen) the full-resolution and sampled snippet arrays of every group."""
    h, w = size
    ph, pw = sample_pixels(np.zeros((1, h, w))).shape[-2:]
    full = [store.require(f"snippets/g{k}", (g.count, g.length, h, w), (1, 1, h, w), dtype)
            for k, g in enumerate(groups)]
    samples = [store.require(f"samples/g{k}", (g.count, g.length, ph, pw), (1, g.length, ph, pw))
               for k, g in enumerate(groups)]
    return full, samples


def global_minimum(store: RunStore) -> float:
    """Minimum over all snippet depths, from the batch records."""
    return float(min(r["min"] for r in store.done_units(STAGE).values()))


def infer_snippets(store: RunStore, model: Model, groups: list[SnippetGroup], seed: int, batch_size: int,
                   progress: Progress) -> float:
    """Run all snippet batches not yet done; returns the global minimum depth."""
    info = store.info
    size, latent_size = tuple(info["size"]), tuple(info["latent_size"])
    full, samples = snippet_arrays(store, groups, size, snippet_dtype(model))
    batches = plan_batches(groups, batch_size)
    timer = progress.stage(STAGE, sum(g.count for g in groups), unit="snippets")
    todo = []
    for batch in batches:
        if store.is_done(STAGE, batch.unit):
            timer.advance(len(batch.members), reused=True)
        else:
            todo.append(batch)
    if todo:
        window = max((g.length - 1) * g.dilation for g in groups) + batch_size
        cache = RowCache(store.array("rgb_latents"), capacity=window // store.array("rgb_latents").chunks[0] + 3)
        noise = initial_noise(model, latent_size, seed)
        scheduler = make_scheduler(model, 1)
        timestep = scheduler.timesteps[0]

        def load(batch: SnippetBatch) -> torch.Tensor:
            frames = np.stack([groups[k].frames(i) for k, i in batch.members])
            return torch.from_numpy(cache.rows(frames))

        def compute(batch: SnippetBatch, rgb: torch.Tensor) -> np.ndarray:
            rgb = rgb.to(model.device, non_blocking=True)
            start = noise.expand(*rgb.shape[:2], -1, -1, -1)
            latents = denoise_step(model, scheduler, rgb, start, timestep)
            flat = latents.reshape(-1, *latents.shape[2:])
            depth = torch.cat([decode_depth(model.vae, flat[i:i + DECODE_BATCH], size)
                               for i in range(0, flat.shape[0], DECODE_BATCH)])
            return depth.reshape(*latents.shape[:2], *size).cpu().numpy()

        def write(batch: SnippetBatch, depth: np.ndarray) -> None:
            for (k, i), d in zip(batch.members, depth):
                full[k][i] = d.astype(full[k].dtype)
                samples[k][i] = sample_pixels(d)
            store.mark_done(STAGE, batch.unit, {"min": float(depth.min())})
            timer.advance(len(batch.members))

        with torch.inference_mode():
            run_overlapped(todo, load, compute, write)
    return global_minimum(store)

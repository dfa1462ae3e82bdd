"""Ingest stage: stream frames from the input in bounded batches, VAE-encode, commit RGB latents.

Writes ``rgb_latents [T, 4, h, w]`` (float32, chunks of ``INGEST_CHUNK`` frames); a unit
is one chunk. Store info gets ``num_frames``, ``size`` (processing H, W) and
``latent_size`` (h, w) once the whole video is ingested (one atomic attribute write, after
every chunk is recorded). A processing side below ``MIN_SIDE`` px is raised to it.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import RunStore
from ...storage.inputs import InputWarning, open_input, to_unit_float
from ..latents import Geometry, encode, frames_to_images, processing_size
from ..model import Model
from ..overlap import run_overlapped
from ..progress import Progress

INGEST_CHUNK = 16
MIN_SIDE = 8  # one latent pixel: thinner processing sizes (extreme aspect ratios) are padded up to it
STAGE = layout.INGEST


def frame_geometry(source_size: tuple[int, int], res: int, mode: str, progress: Progress) -> Geometry:
    """The run's ``Geometry``: processing size from ``res`` (sides below ``MIN_SIDE`` raised to it)."""
    size = processing_size(*source_size, res)
    if min(size) < MIN_SIDE:
        thin = size
        size = (max(size[0], MIN_SIDE), max(size[1], MIN_SIDE))
        progress.note(f"processing size {thin[0]}x{thin[1]} is below {MIN_SIDE} px; using {size[0]}x{size[1]} "
                      f"(extreme aspect ratio: raise --res for more detail)")
    return Geometry(size, mode)


def uint8_batches(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """``uint8 [B, H, W, 3]`` batches of up to ``size`` frames from a ``FrameSource.frames`` stream."""
    # INTEGRATE: 16-bit and float frames are cut to 8 bits here, and frames of another size (a resolution
    # change mid-stream) cannot share a batch: fit them to the processing size before batching
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame if frame.dtype == np.uint8 else np.round(to_unit_float(frame) * 255).astype(np.uint8))
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def stored_geometry(info: dict) -> Geometry:
    """The ``Geometry`` ingest published in the store's info."""
    return Geometry(tuple(info["frame_size"]), info["geometry"])


def ingest(store: RunStore, model: Model, video: str, start: int, count: int | None, geometry: Geometry,
           frames_hint: int, progress: Progress) -> dict:
    """Encode frames ``[start, start+count)`` of ``video``; returns the store's info."""
    if "num_frames" in store.info:
        timer = progress.stage(STAGE, store.info["num_frames"])
        timer.advance(store.info["num_frames"], reused=True)
        return store.info
    expected = max(frames_hint - start, 0) if count is None else count
    timer = progress.stage(STAGE, expected or 1)
    state: dict = {"array": None, "frames": 0}

    def load(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
        return item

    def compute(item, data) -> np.ndarray | None:
        unit, frames = data
        if store.is_done(STAGE, layout.chunk_unit(unit * INGEST_CHUNK)):
            return None
        images = geometry.to_vae(frames_to_images(frames, geometry.frame)).to(model.device, model.dtype)
        return encode(model.vae, images).float().cpu().numpy()

    def write(item, latents: np.ndarray | None) -> None:
        unit, frames = item
        first = unit * INGEST_CHUNK
        state["frames"] = first + len(frames)
        if latents is None:
            timer.advance(len(frames), reused=True)
            return
        arr = state["array"]
        if arr is None:
            arr = store.array(layout.RGB_LATENTS) if store.has(layout.RGB_LATENTS) else \
                store.require(layout.RGB_LATENTS, (first + len(frames), *latents.shape[1:]),
                              (INGEST_CHUNK, *latents.shape[1:]))
        if arr.shape[0] < first + len(frames):
            arr.resize((first + len(frames), *arr.shape[1:]))
        arr[first:first + len(frames)] = latents
        state["array"] = arr
        store.mark_done(STAGE, layout.chunk_unit(first))
        timer.advance(len(frames))

    source = open_input(video)
    batches = enumerate(uint8_batches(source.frames(start, count), INGEST_CHUNK))
    with torch.inference_mode():
        run_overlapped(batches, load, compute, write)
    for problem in source.report.problems():
        warnings.warn(f"{video}: {problem}", InputWarning)
    num_frames = state["frames"]
    if num_frames == 0:
        return {}
    arr = store.array(layout.RGB_LATENTS)
    if arr.shape[0] != num_frames:
        arr.resize((num_frames, *arr.shape[1:]))
    store.update_info(num_frames=num_frames, geometry=geometry.mode, frame_size=list(geometry.frame),
                      depth_size=list(geometry.depth), latent_size=list(geometry.latent))
    return store.info

"""Ingest stage: stream frames one at a time, resize, VAE-encode, commit RGB latents.

Writes ``rgb_latents [T, 4, h, w]`` in units of ``unit`` frames (one shard each). Frames are
resized one by one as they are read, each read in bands of rows (a ``FrameView``: a video
frame is converted to RGB band by band where swscale allows), so one source frame is held at
a time and batches hold processing-size frames only. Batches are encoded ``ENCODE_BATCH`` at
a time by the executor (here, or on a cluster's workers while this process decodes ahead;
the latents are written here, in order). Once the whole input is in, the run's facts get
``num_frames`` and the frame ``Geometry`` (one write, after every unit is recorded).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ...storage import layout
from ...storage.inputs.source import FULL_SCALE, FrameView
from ..execution import UnitContext
from ..latents import Geometry, encode, processing_size, resize_frame
from ..overlap import run_overlapped
from ..progress import Progress
from ..run_context import RunContext

ENCODE_BATCH = 16
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


def fitted_size(frame_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The largest size of ``frame_size``'s aspect inside ``size``."""
    h, w = frame_size
    return min(size[0], max(1, round(h * size[1] / w))), min(size[1], max(1, round(w * size[0] / h)))


def prepare_frame(frame: FrameView, source_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """One frame -> float32 ``[3, *size]`` in [-1, 1]: resized on its own value scale, then
    ``/ full scale * 2 - 1`` (SPEC). A frame of another size than the input's first,
    ``source_size`` (a resolution change mid-stream), is fitted into ``size`` with its aspect
    kept, bars in black."""
    fitted = tuple(size) if frame.shape[:2] == tuple(source_size) else fitted_size(frame.shape[:2], size)
    x = resize_frame(frame, fitted) / FULL_SCALE.get(frame.dtype, 1.0) * 2.0 - 1.0
    if fitted != tuple(size):
        top, left = (size[0] - fitted[0]) // 2, (size[1] - fitted[1]) // 2
        x = F.pad(x, (left, size[1] - fitted[1] - left, top, size[0] - fitted[0] - top), value=-1.0)
    return x


def unit_batches(frames: Iterable[FrameView], unit: int,
                 prepare: Callable[[int, FrameView], Any]) -> Iterator[tuple[int, list, bool]]:
    """``(first index, prepared frames, ends_unit)``: at most ``ENCODE_BATCH`` frames, never across
    a unit boundary; ``ends_unit`` is true for a unit's last batch (the input's last one included).
    Each frame goes through ``prepare(index, frame)`` as it is read and is dropped before the
    next is read, so one source frame is held at a time and the batches hold none."""
    batch: list = []
    first = 0
    iterator = iter(frames)
    upcoming = next(iterator, None)
    while upcoming is not None:
        prepared = prepare(first + len(batch), upcoming)
        upcoming = None  # dropped before the next frame decodes
        batch.append(prepared)
        upcoming = next(iterator, None)
        index = first + len(batch)
        if upcoming is None or index % unit == 0 or len(batch) == ENCODE_BATCH:
            yield first, batch, upcoming is None or index % unit == 0
            first, batch = index, []


def encode_images(ctx: UnitContext, images: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Task: prepared frames ``float32 [n, 3, H, W]`` -> RGB latents ``[n, 4, h, w]`` (storage dtype)."""
    model = ctx.model
    with torch.inference_mode():
        latents = encode(model.vae, geometry.to_vae(torch.from_numpy(images).to(model.device, model.dtype)))
    return latents.to(model.storage_torch_dtype).cpu().numpy()


def ingest(ctx: RunContext, frames: Iterable[FrameView], expected: int, source_size: tuple[int, int],
           geometry: Geometry) -> int:
    """Encode every frame of ``frames`` (the clip, in order) into ``rgb_latents``; returns the frame count.

    ``expected``: the frame count the input announces (0 = unknown), for progress only;
    ``source_size``: the input's frame size (frames of another size are fitted, see ``prepare_frame``).
    Units already recorded are decoded past but not encoded again.
    """
    store, executor, progress, unit = ctx.store, ctx.executor, ctx.progress, ctx.facts.frame_unit
    if ctx.facts.num_frames is not None:
        if len(store.done_units(STAGE)) == -(-ctx.facts.num_frames // unit):
            progress.stage(STAGE, ctx.facts.num_frames).advance(ctx.facts.num_frames, reused=True)
            return ctx.facts.num_frames
        ctx.forget("num_frames")  # records withdrawn (damaged): walk the input again, encoding those units
    # a container's frame count is a hint (0: none, VFR and cut streams differ): an estimate until the stream ends
    timer = progress.stage(STAGE, expected or None, estimate=True)
    latent_shape = (4, *geometry.latent)
    dtype = executor.facts.storage_dtype
    pending: dict[int, np.ndarray] = {}  # unit first frame -> latents buffer being filled
    state = {"frames": 0, "array": None}

    done = set(store.done_units(STAGE))

    def prepare(index: int, frame: FrameView) -> torch.Tensor | None:
        """The frame at processing size; ``None`` in a unit already recorded (decoded past)."""
        if layout.chunk_unit(index - index % unit) in done:
            return None
        return prepare_frame(frame, source_size, geometry.frame)

    def load(item):
        _, batch, _ = item
        return None if batch[0] is None else torch.stack(batch).numpy()

    def compute(item, images):
        return None if images is None else executor.submit(encode_images, images, geometry)

    def write(item, handle) -> None:
        first, batch, ends_unit = item
        state["frames"] = first + len(batch)
        start = first - first % unit
        if handle is None:
            timer.advance(len(batch), reused=True)
            return
        buffer = pending.setdefault(start, np.zeros((unit, *latent_shape), dtype=dtype))
        buffer[first - start:first - start + len(batch)] = executor.result(handle)
        if ends_unit:
            stop = first + len(batch)
            arr = state["array"] or (store.array(layout.RGB_LATENTS) if store.has(layout.RGB_LATENTS) else
                                     store.require(layout.RGB_LATENTS, (stop, *latent_shape), dtype,
                                                   layout.LATENT_DIMS, unit))
            if arr.shape[0] < stop:
                arr.zarr.resize((stop, *latent_shape))
            arr.write(start, pending.pop(start)[:stop - start])
            state["array"] = arr
            store.mark_done(STAGE, layout.chunk_unit(start), {"frames": stop - start, "work": {"encode": stop - start}})
        timer.advance(len(batch))

    run_overlapped(unit_batches(frames, unit, prepare), load, compute, write, depth=2 * executor.workers)
    num_frames = state["frames"]
    timer.set_total(num_frames)
    if num_frames == 0:
        return 0
    arr = store.array(layout.RGB_LATENTS)
    if arr.shape[0] != num_frames:
        arr.zarr.resize((num_frames, *latent_shape))
    ctx.record(num_frames=num_frames, geometry=geometry.mode, frame_size=geometry.frame, depth_size=geometry.depth,
               latent_size=geometry.latent)
    return num_frames


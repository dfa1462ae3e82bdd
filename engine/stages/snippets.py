"""Snippet stage: the device worker runs every planned unit and commits snippet scratch and samples.

Per series ``j`` (configured dilation) it writes ``snippets/g{j}`` (the plan's scratch:
full-resolution depth ``[N_j, L_j, H, W]`` or latents ``[N_j, L_j, 4, h, w]``, in the
compute precision) and ``samples/g{j} [N_j, L_j, P_h, P_w]``, the strided copy
co-alignment reads, row ``s`` holding the snippet that starts at frame ``s`` (in whichever
shot); one shard of each per unit. A unit's record holds each shot's minimum depth over
its snippets (a shot's minimum is its own: shots are aligned independently). Non-finite
depth in a batch is computed again in float32; if it stays non-finite the run stops
naming the unit.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import RowCache
from ...storage.run_store import CheckedArray, RunStore
from ..batching import SnippetUnit
from ..coalign import sample_pixels
from ..denoise import denoise_step, initial_noise, make_scheduler
from ..errors import EngineError
from ..execution import Executor, UnitContext
from ..latents import Geometry, decode_depth
from ..model import Model
from ..overlap import run_overlapped
from ..plan import RunPlan
from ..progress import Progress

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


def scratch_arrays(store: RunStore, plan: RunPlan, dtype: str) -> dict[int, tuple[CheckedArray, CheckedArray]]:
    """Create (or reopen) the scratch and sample arrays of every series with snippets."""
    unit, depth = plan.snippet_unit, plan.geometry.depth
    ph, pw = sample_pixels(np.zeros(depth)).shape
    trailing = depth if plan.scratch == "depth" else (4, *plan.geometry.latent)
    names = ("y", "x") if plan.scratch == "depth" else ("channel", "latent_y", "latent_x")
    arrays = {}
    for j, (rows, slots) in enumerate(zip(plan.series_rows, plan.series_slots)):
        if rows:
            arrays[j] = (store.require(layout.snippet_scratch(j), (rows, slots, *trailing), dtype,
                                       layout.snippet_dims(j, names), unit, inner=(1, 1, *trailing),
                                       attrs={"scratch": plan.scratch}),
                         store.require(layout.snippet_samples(j), (rows, slots, ph, pw), dtype,
                                       layout.snippet_dims(j, ("sample_y", "sample_x")), unit,
                                       inner=(unit, slots, ph, pw)))
    return arrays


def shot_minima(store: RunStore, shots: int) -> list[float]:
    """Each shot's minimum over its snippets' depth, from the unit records."""
    minima = [np.inf] * shots
    for record in store.done_units(STAGE).values():
        for shot, value in record["min"].items():
            minima[int(shot)] = min(minima[int(shot)], value)
    return [float(m) for m in minima]


class SnippetWorker:
    """UNet step + VAE decode of one batch, on the model's device; float32 again where fp16/bf16
    gives non-finite depth."""

    def __init__(self, model: Model, geometry: Geometry, seed: int, device_timer: DeviceTimer | None):
        self.model, self.geometry, self.seed, self.timer = model, geometry, seed, device_timer
        self.scheduler = make_scheduler(model, 1)
        self.timestep = self.scheduler.timesteps[0]
        self.step_at = int(self.timestep)  # the scheduler indexes host tables: a host int avoids a device sync
        self.noise = initial_noise(model, geometry.latent, seed)
        self.widened = 0  # batches computed again in float32

    def run(self, model: Model, noise: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``rgb`` ``[b, L, 4, h, w]`` -> (latents ``[b, L, 4, h, w]``, depth ``[b, L, H, W]``), compute dtype."""
        t0 = self.timer.stamp() if self.timer else None
        rgb = rgb.to(model.device, non_blocking=True)
        start = noise.expand(*rgb.shape[:2], -1, -1, -1)
        latents = denoise_step(model, self.scheduler, rgb, start, self.timestep, step_at=self.step_at)
        t1 = self.timer.stamp() if self.timer else None
        flat = latents.reshape(-1, *latents.shape[2:])
        depth = torch.cat([decode_depth(model.vae, flat[i:i + DECODE_BATCH], self.geometry)
                           for i in range(0, flat.shape[0], DECODE_BATCH)])
        if self.timer:
            self.timer.add("unet", t0, t1)
            self.timer.add("decode", t1, self.timer.stamp())
            self.timer.batches.append((rgb.shape[0], rgb.shape[1], *rgb.shape[-2:]))
        return latents, depth.reshape(*latents.shape[:2], *depth.shape[1:])

    def __call__(self, rgb: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        latents, depth = self.run(self.model, self.noise, rgb)
        if torch.isfinite(depth).all():
            return latents, depth
        if self.model.dtype != torch.float32:  # fp16 overflow: the same batch in float32, stored as such
            wide = self.model.in_float32()
            latents, depth = self.run(wide, self.noise.float(), rgb)
            if torch.isfinite(depth).all():
                self.widened += 1
                return latents.to(self.model.dtype), depth.to(self.model.dtype)
        if not torch.isfinite(rgb).all():  # the weights were checked finite at load: the input is to blame
            raise EngineError(f"non-finite values in the encoded input frames of {where}: the input holds NaN or "
                              "infinite pixels, or they overflow the VAE encoder")
        raise EngineError(f"non-finite depth in {where} of {self.model.checkpoint} even in float32: the "
                          "checkpoint's weights are probably damaged (re-download them)")


def infer_snippets(store: RunStore, executor: Executor, plan: RunPlan, seed: int, progress: Progress,
                   device_timer: DeviceTimer | None = None) -> list[float]:
    """Run every planned unit not yet done; returns each shot's minimum depth.

    Here, all units go through one overlapped pipeline; on a cluster, each unit is a task.
    ``device_timer``: times the UNet step and the VAE decode of every batch (benchmarks, here only).
    """
    timer = progress.stage(STAGE, plan.snippets, unit="snippets")
    todo = []
    for unit in plan.units:
        if store.is_done(STAGE, unit.id):
            timer.advance(unit.size, reused=True)
        else:
            todo.append(unit)
    if not todo:
        return shot_minima(store, len(plan.shots))
    scratch_arrays(store, plan, executor.facts.storage_dtype)  # created here: tasks only write their shards
    chunks = [todo] if executor.workers == 1 else [[unit] for unit in todo]
    widened = sum(result for _, result in executor.map(run_units, chunks, plan, seed, device_timer, timer=timer))
    if widened:
        progress.note(f"{widened} snippet batch(es) gave non-finite depth in the compute dtype "
                      "(overflow) and were computed again in float32")
    return shot_minima(store, len(plan.shots))


def run_units(ctx: UnitContext, units: list[SnippetUnit], plan: RunPlan, seed: int,
              device_timer: DeviceTimer | None = None) -> int:
    """Task: compute ``units`` (load, UNet + decode, write overlapped), recording each when its
    shards are written; returns how many batches needed float32."""
    store, model = ctx.store, ctx.model
    arrays = scratch_arrays(store, plan, model.storage_dtype)
    groups, shot_of = plan.groups, plan.shot_of_group()
    rgb_latents = store.array(layout.RGB_LATENTS)
    window = max((g.length - 1) * g.dilation for g in groups) + plan.snippet_unit
    cache = RowCache(rgb_latents, rgb_latents.unit, capacity=window // rgb_latents.unit + 2)
    worker = SnippetWorker(model, plan.geometry, seed, device_timer)
    cuda = model.device.type == "cuda"
    if cuda:
        model.vae.to(memory_format=torch.channels_last)
    items = [(unit, batch, b == len(unit.batches) - 1) for unit in units for b, batch in enumerate(unit.batches)]
    buffers: dict[int, dict] = {}

    def load(item) -> torch.Tensor:
        _, batch, _ = item
        rgb = torch.from_numpy(cache.rows(np.stack([groups[k].frames(i) for k, i in batch.members])))
        return rgb.pin_memory() if cuda else rgb  # pinned: the copy to the device is truly async

    def compute(item, rgb: torch.Tensor):
        unit, batch, _ = item
        latents, depth = worker(rgb, f"snippet unit {unit.id} (frames {unit.first}..)")
        kept = depth if plan.scratch == "depth" else latents
        kept = kept.to(model.storage_torch_dtype)
        depth = depth.to(model.storage_torch_dtype)
        if not cuda:
            return kept.numpy(), depth.numpy(), None
        # Copy back into pinned memory without blocking this thread; the writer waits on the event.
        hosts = [torch.empty(x.shape, dtype=x.dtype, pin_memory=True) for x in (kept, depth)]
        for host, x in zip(hosts, (kept, depth)):
            host.copy_(x, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return hosts[0], hosts[1], done

    def write(item, result) -> None:
        unit, batch, last = item
        kept, depth, done = result
        if done is not None:
            done.synchronize()
            kept, depth = kept.numpy(), depth.numpy()
        state = buffers.setdefault(unit.first, new_unit_buffers(unit, kept, depth))
        for (k, i), x, d in zip(batch.members, kept, depth):
            g, row = groups[k], groups[k].offset + i - unit.first
            state["scratch"][g.series][row, :g.length] = x
            state["samples"][g.series][row, :g.length] = sample_pixels(d)
            shot = str(shot_of[k])
            state["min"][shot] = min(state["min"].get(shot, np.inf), float(d.min()))
        if last:
            for j, (scratch, samples) in arrays.items():
                n = min(unit.stop, plan.series_rows[j]) - unit.first
                if n > 0:
                    scratch.write(unit.first, state["scratch"][j][:n])
                    samples.write(unit.first, state["samples"][j][:n])
            ctx.done(STAGE, unit.id, {"min": state["min"]})
            del buffers[unit.first]
        ctx.advance(len(batch.members))

    def new_unit_buffers(unit: SnippetUnit, kept: np.ndarray, depth: np.ndarray) -> dict:
        rows = unit.stop - unit.first
        return {"min": {},
                "scratch": {j: np.zeros((rows, plan.series_slots[j], *kept.shape[2:]), kept.dtype) for j in arrays},
                "samples": {j: np.zeros((rows, plan.series_slots[j], *sample_pixels(depth[0, 0]).shape), depth.dtype)
                            for j in arrays}}

    with torch.inference_mode():
        run_overlapped(items, load, compute, write)
    return worker.widened

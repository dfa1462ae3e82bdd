"""Snippet stage: the device runs the snippet stream unit by unit and commits the snippet scratch.

The stream (``plan.batches``) is cut into units of consecutive batches while it runs
(``SnippetStream``): about ``--unit-seconds`` of device work each, as measured, and never
more than one shard of scratch. A unit's task runs its batches (UNet step + VAE decode,
loading and writing overlapped), writes the unit's scratch arrays (``stages.scratch``) and
records ``{"stop": last batch + 1, "min": {shot: minimum depth}, "bytes": stored bytes,
"work": device work, "seconds": its wall time}``. A shot's snippets are done when every batch holding one of them is
recorded. Non-finite depth in a batch is computed again in float32; if it stays non-finite
the run stops naming the unit.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ...storage import layout
from ...storage.array_reads import RowCache
from ...storage.run_store import RunStore
from ..batching import SnippetUnit
from ..coalign import sample_pixels
from ..denoise import denoise_step, initial_noise, make_scheduler
from ..errors import EngineError
from ..execution import Executor, UnitContext
from ..latents import Geometry, decode_depth
from ..model import Model
from ..overlap import run_overlapped
from ..plan import RunPlan
from ..progress import StageTimer
from ..unit_sizing import UnitSizer
from .scratch import ScratchIndex, scratch_arrays

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


def unit_most(plan: RunPlan, itemsize: int) -> int:
    """Most batches in one unit: its scratch (held in memory until written) within one shard's bytes."""
    length = max((b.length for b in plan.batches), default=1)
    per_batch = plan.batch_size * length * itemsize * (int(np.prod(plan.geometry.depth)) + 4 * int(
        np.prod(plan.geometry.latent)))
    return max(1, layout.SHARD_BYTES // max(1, per_batch))


class SnippetStream:
    """The client's view of the snippet stream: which batches are recorded, which unit comes next.

    ``covered[b]``: batch ``b`` is recorded; ``next_units()`` cuts the next units from the first
    batches not recorded, sized by the ``UnitSizer`` and ended at the last batch of a shot (so a
    shot's scratch is released with the shot, not with the units of later shots): one unit in
    this process, two per worker on a cluster, where they run side by side.
    """

    def __init__(self, store: RunStore, plan: RunPlan, executor: Executor, unit_seconds: float,
                 timer: StageTimer):
        self.store, self.plan, self.executor, self.timer = store, plan, executor, timer
        self.index = ScratchIndex(plan)
        self.covered = np.zeros(len(plan.batches), dtype=bool)
        self.unit_shots: dict[int, list[int]] = {}  # first batch of a recorded unit -> shots with snippets in it
        self.shot_units: dict[int, list[int]] = {}  # shot -> first batches of the recorded units holding it
        self.minima: dict[int, float] = {}
        self.bytes: dict[int, int] = {}  # shot -> bytes on disk of its units (shared units counted whole)
        for unit, record in store.done_units(STAGE).items():
            self._absorb(layout.batch_unit_first(unit), record)
        self.sizer = UnitSizer(unit_seconds, unit_most(plan, executor.facts.itemsize))
        self.shot_ends = {int(b) for b in plan.last_batch if b >= 0}
        self._forget_unrecorded_scratch()
        sizes = np.array([len(b.members) for b in plan.batches], dtype=np.int64)
        timer.advance(int(sizes[self.covered].sum()), reused=True)
        self.widened = 0

    def _absorb(self, first: int, record: dict) -> None:
        """Take in a unit's record."""
        self.covered[first:record["stop"]] = True
        self.unit_shots[first] = sorted(int(k) for k in record["min"])
        for k in self.unit_shots[first]:
            self.shot_units.setdefault(k, []).append(first)
            self.minima[k] = min(self.minima.get(k, np.inf), record["min"][str(k)])
            self.bytes[k] = self.bytes.get(k, 0) + record.get("bytes", 0)

    def _forget_unrecorded_scratch(self) -> None:
        """Scratch arrays of units a killed run did not record are removed (their batches run again)."""
        folder = self.store.path / layout.SNIPPET_SCRATCH
        recorded = {layout.batch_unit(first) for first in self.unit_shots}
        for entry in (sorted(os.listdir(folder)) if folder.is_dir() else []):
            if entry not in recorded and entry != "zarr.json":
                self.store.delete(f"{layout.SNIPPET_SCRATCH}/{entry}")

    @property
    def finished(self) -> bool:
        return bool(self.covered.all())

    def shot_done(self, k: int) -> bool:
        return self.plan.last_batch[k] < 0 or bool(self.covered[:self.plan.last_batch[k] + 1].all())

    def shot_started(self, k: int) -> bool:
        return k in self.shot_units

    def shots_touched(self, units: list[SnippetUnit]) -> set[int]:
        """The shots with snippets in ``units``."""
        shot_of = self.plan.shot_of_group()
        return {shot_of[k] for unit in units for b in range(unit.first, unit.stop)
                for k, _ in self.plan.batches[b].members}

    def next_units(self) -> list[SnippetUnit]:
        """The units to compute next (empty when every batch is recorded)."""
        pending = np.flatnonzero(~self.covered)
        if not len(pending):
            return []
        count = 1 if self.executor.workers == 1 else 2 * self.executor.workers
        units, at = [], int(pending[0])
        size = self.sizer.next_size()
        while len(units) < count and at < len(self.covered):
            stop = at
            while stop < len(self.covered) and not self.covered[stop] and stop - at < size:
                stop += 1
                if stop - 1 in self.shot_ends:  # a unit ends with a shot: its scratch goes with the shot
                    break
            units.append(SnippetUnit(at, stop))
            rest = np.flatnonzero(~self.covered[stop:])
            if not len(rest):
                break
            at = stop + int(rest[0])
        return units

    def run(self, units: list[SnippetUnit], seed: int, device_timer: DeviceTimer | None = None) -> None:
        """Compute ``units`` (their tasks record them) and note how long they took."""
        started = time.perf_counter()
        chunks = [units] if self.executor.workers == 1 else [[unit] for unit in units]
        for _, widened in self.executor.map(run_units, chunks, self.plan, seed, device_timer, timer=self.timer):
            self.widened += widened
        records = self.store.done_units(STAGE)
        for unit in units:
            self._absorb(unit.first, records[layout.batch_unit(unit.first)])
        side_by_side = min(self.executor.workers, len(units))  # device time: the wall time on each worker
        self.sizer.observe(sum(u.stop - u.first for u in units), (time.perf_counter() - started) * side_by_side)

    def shot_minimum(self, k: int) -> float:
        """Shot ``k``'s minimum depth over its snippets (from the unit records)."""
        return float(self.minima.get(k, np.inf))

    def units_of_shot(self, k: int) -> list[int]:
        """First batches of the recorded units holding snippets of shot ``k``."""
        return sorted(self.shot_units.get(k, []))

    def stored_bytes(self, k: int) -> int:
        """Bytes on disk of the units holding snippets of shot ``k`` (shared units counted whole)."""
        return self.bytes.get(k, 0)


def run_units(ctx: UnitContext, units: list[SnippetUnit], plan: RunPlan, seed: int,
              device_timer: DeviceTimer | None = None) -> int:
    """Task: compute ``units`` in order (load, UNet + decode, write overlapped), recording each
    when its arrays are written; returns how many batches needed float32."""
    store, model = ctx.store, ctx.model
    index = ScratchIndex(plan)
    groups, shot_of = plan.groups, plan.shot_of_group()
    rgb_latents = store.array(layout.RGB_LATENTS)
    window = max((g.length - 1) * g.dilation for g in groups) + 64
    cache = RowCache(rgb_latents, rgb_latents.unit, capacity=window // rgb_latents.unit + 2)
    worker = SnippetWorker(model, plan.geometry, seed, device_timer)
    cuda = model.device.type == "cuda"
    if cuda:
        model.vae.to(memory_format=torch.channels_last)
    items = [(unit, b) for unit in units for b in range(unit.first, unit.stop)]
    buffers: dict[int, dict] = {}
    starts: dict[int, float] = {}  # when each unit's first batch was loaded

    def load(item) -> torch.Tensor:
        unit, b = item
        starts.setdefault(unit.first, time.perf_counter())
        rgb = torch.from_numpy(cache.rows(np.stack([groups[k].frames(i) for k, i in plan.batches[b].members])))
        return rgb.pin_memory() if cuda else rgb  # pinned: the copy to the device is truly async

    def compute(item, rgb: torch.Tensor):
        unit, b = item
        latents, depth = worker(rgb, f"snippet unit {layout.batch_unit(unit.first)} (batch {b})")
        kinds = [index.kind_of_group[k] for k, _ in plan.batches[b].members]
        kept = latents if "latent" in kinds else None
        results = [x.to(model.storage_torch_dtype) for x in (depth, kept) if x is not None]
        if not cuda:
            return [x.numpy() for x in results], None
        # Copy back into pinned memory without blocking this thread; the writer waits on the event.
        hosts = [torch.empty(x.shape, dtype=x.dtype, pin_memory=True) for x in results]
        for host, x in zip(hosts, results):
            host.copy_(x, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return hosts, done

    def write(item, result) -> None:
        unit, b = item
        arrays, done = result
        if done is not None:
            done.synchronize()
            arrays = [x.numpy() for x in arrays]
        depth, latents = arrays[0], (arrays[1] if len(arrays) > 1 else None)
        state = buffers.setdefault(unit.first, new_unit_buffers(unit, depth.dtype))
        batch = plan.batches[b]
        for j, (k, i) in enumerate(batch.members):
            kind = index.kind_of_group[k]
            rows = slice(index.kind_row[k][i] - state["first"][kind], index.kind_row[k][i] - state["first"][kind]
                         + batch.length)
            state[kind][rows] = depth[j] if kind == "depth" else latents[j]
            at = index.sample_row[k][i] - state["first"]["samples"]
            state["samples"][at:at + batch.length] = sample_pixels(depth[j])
            shot = str(shot_of[k])
            state["min"][shot] = min(state["min"].get(shot, np.inf), float(depth[j].min()))
        state["work"]["unet"] += len(batch.members) * batch.length
        state["work"]["decode"] += len(batch.members) * batch.length
        if b == unit.stop - 1:
            seconds = time.perf_counter() - starts.pop(unit.first)
            store.delete(f"{layout.SNIPPET_SCRATCH}/{layout.batch_unit(unit.first)}")  # a killed run's leftovers
            arrays = scratch_arrays(store, plan, index, unit, model.storage_dtype)
            for name, array in arrays.items():
                array.write(0, state[name])
            stored = sum(store.disk_bytes(layout.snippet_scratch(unit.first, name), allocated=False) for name in arrays)
            ctx.done(STAGE, layout.batch_unit(unit.first), {"stop": unit.stop, "min": state["min"], "bytes": stored,
                                                             "work": state["work"], "seconds": round(seconds, 3)})
            del buffers[unit.first]
        ctx.advance(len(batch.members))

    def new_unit_buffers(unit: SnippetUnit, dtype: np.dtype) -> dict:
        rows = index.unit_rows(unit)
        ph, pw = sample_pixels(np.zeros(plan.geometry.depth)).shape
        return {"min": {}, "work": {"unet": 0, "decode": 0},
                "first": {name: index.first_rows[name][unit.first] for name in ("depth", "latent", "samples")},
                "depth": np.zeros((rows.depth, *plan.geometry.depth), dtype),
                "latent": np.zeros((rows.latent, 4, *plan.geometry.latent), dtype),
                "samples": np.zeros((rows.samples, ph, pw), dtype)}

    with torch.inference_mode():
        run_overlapped(items, load, compute, write)
    return worker.widened

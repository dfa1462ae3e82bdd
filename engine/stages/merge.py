"""Merge stage: the mean of one shot's co-aligned observations per frame, then [-1, 1] in place.

``merge_shot`` writes the shot's rows of ``depth [T, H, W]`` as
``mean_k(s_k * (x_k - shot_min) + t_k)`` over the observations of each frame, one unit (the
shot's part of a shard, ``plan.segments``) at a time; its records hold each unit's range and
checksum. ``normalize_shot`` then rewrites each unit in place as ``(x - lo) / (hi - lo) * 2 - 1``
with the shot's range (or, with ``--normalize global``, the whole video's: every shot's merge
must be done first): a unit whose bytes no longer match the merge's checksum was normalized
already (writes are atomic), so a kill between the write and the record costs nothing.
Snippet maps come from the scratch: read (``depth`` scratch) or decoded again on the device
(``latent`` scratch).

Arithmetic: float64 by default. With an ``exact_dtype`` (``--reproduce``) every step runs
in that torch dtype in the published order: min shift, affine with the scale and shift
cast to it, mean of the stacked observations (group order, then snippet order), and the
normalization as ``x -= min; x /= max; x * 2 - 1``.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import RunStore
from ..execution import UnitContext
from ..model import TORCH_DTYPES
from ..plan import RunPlan
from ..run_context import RunContext
from ..shots.model import Shot
from ..snippets import SnippetGroup
from .coalign import shot_solution
from .scratch import ScratchIndex, SnippetMaps, UnitLocator

SUB_CHUNK = 16  # frames merged at once inside a unit (bounds the float64 temporaries)


def checksum(frames: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frames, dtype=np.float32).tobytes())


def value_range(frames: np.ndarray) -> list[float]:
    return [float(frames.min()), float(frames.max())]


def merge_frames(snippets: list, groups: list[SnippetGroup], scales: list[np.ndarray],
                 shifts: list[np.ndarray], minimum: float, first: int, stop: int,
                 exact_dtype: str | None = None) -> np.ndarray:
    """Mean of the aligned observations of frames ``[first, stop)``: float64 ``[stop-first, H, W]``.

    ``snippets``: one ``[N_g, L_g, H, W]`` array-like per group (local snippet indices);
    ``minimum``: the minimum the maps are shifted by (their shot's). Frames no snippet
    observes are 0.
    """
    h, w = snippets[0].shape[-2:]
    observations: list[list] = [[] for _ in range(stop - first)]
    total = np.zeros((stop - first, h, w), dtype=np.float64)
    count = np.zeros(stop - first, dtype=np.int64)
    for arr, g, s, t in zip(snippets, groups, scales, shifts):
        for slot in reversed(range(g.length)):  # for one frame: snippets in ascending order
            lo, hi = g.snippets_touching(first, stop, slot)
            if hi <= lo:
                continue
            at = np.arange(lo, hi) + g.offset + slot * g.dilation - first
            if exact_dtype is None:
                x = np.asarray(arr[lo:hi, slot], dtype=np.float64)
                total[at] += s[lo:hi, None, None] * (x - minimum) + t[lo:hi, None, None]
                count[at] += 1
                continue
            dtype = TORCH_DTYPES[exact_dtype]
            x = torch.from_numpy(np.asarray(arr[lo:hi, slot])).to(dtype)
            shifted = x - torch.tensor(minimum, dtype=dtype)
            scale = torch.from_numpy(s[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            shift = torch.from_numpy(t[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            for frame, value in zip(at, shifted * scale + shift):
                observations[frame].append(value)
    if exact_dtype is None:
        return total / np.maximum(count, 1)[:, None, None]
    return np.stack([torch.stack(obs).mean(0).double().numpy() if obs else np.zeros((h, w))
                     for obs in observations])


def normalized(x: np.ndarray, lo: float, hi: float, exact_dtype: str | None = None) -> np.ndarray:
    """``(x - lo) / (hi - lo) * 2 - 1`` as float32 (a constant shot gives 0), in float64 or in ``exact_dtype``."""
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    if exact_dtype is None:
        return ((np.asarray(x, dtype=np.float64) - lo) / (hi - lo) * 2 - 1).astype(np.float32)
    dtype = TORCH_DTYPES[exact_dtype]
    low, high = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    shifted = torch.from_numpy(np.asarray(x)).to(dtype) - low
    return (shifted / (high - low) * 2.0 - 1.0).float().numpy()


def pending_segments(store: RunStore, stage: str, plan: RunPlan, shot: Shot) -> list[tuple[int, int, str]]:
    """``(first, stop, unit)`` of the shot's units of ``stage`` not yet recorded."""
    return [(a, b, layout.chunk_unit(a)) for a, b in plan.segments(shot) if not store.is_done(stage, layout.chunk_unit(a))]


def merge_shot(ctx: RunContext, shot: Shot) -> None:
    """Write the shot's merged depth unit by unit (``merge_unit`` tasks)."""
    store, plan = ctx.store, ctx.plan
    pending = pending_segments(store, layout.MERGE, plan, shot)
    if not pending:
        return
    store.require(layout.DEPTH, (plan.num_frames, *plan.geometry.depth), "float32", layout.FRAME_DIMS,
                  plan.frame_unit, attrs={"coordinates": layout.TIME})
    scales, shifts = shot_solution(store, plan, shot)
    minimum = ctx.stream.shot_minimum(shot.index)
    units = ctx.stream.units_of_shot(shot.index)
    for _ in ctx.executor.map(merge_unit, pending, plan, ctx.stream.index, units, shot.index, scales, shifts,
                              minimum, ctx.cfg.exact_dtype, timer=ctx.timers[layout.MERGE]):
        pass


def merge_unit(ctx: UnitContext, segment: tuple[int, int, str], plan: RunPlan, index: ScratchIndex,
               unit_firsts: list[int], shot: int, scales: list[np.ndarray], shifts: list[np.ndarray],
               minimum: float, exact_dtype: str | None) -> None:
    """Task: merge frames ``[first, stop)`` of shot ``shot`` into ``depth``; the record holds the
    unit's checksum, value range and the VAE decodes it needed (latent scratch)."""
    first, stop, unit_id = segment
    groups = [plan.groups[k] for k in plan.shot_groups[shot]]
    locator = UnitLocator(unit_firsts)
    snippets = [SnippetMaps(ctx.store, index, locator, k, plan.groups[k].length, plan.geometry.depth, ctx.model,
                            plan.geometry) for k in plan.shot_groups[shot]]
    frames = np.empty((stop - first, *plan.geometry.depth), dtype=np.float32)
    for a in range(first, stop, SUB_CHUNK):
        b = min(a + SUB_CHUNK, stop)
        frames[a - first:b - first] = merge_frames(snippets, groups, scales, shifts, minimum, a, b, exact_dtype)
        ctx.advance(b - a)
    ctx.store.array(layout.DEPTH).write(first, frames)
    decoded = sum(maps.decoded for maps in snippets)
    ctx.done(layout.MERGE, unit_id, {"range": value_range(frames), "crc": checksum(frames),
                                     "work": {"decode": decoded}})


def shot_range(store: RunStore, stage: str, plan: RunPlan, shot: Shot) -> tuple[float, float]:
    """(min, max) of the shot's values as written by ``stage`` (from its unit records)."""
    records = store.done_units(stage)
    ranges = [records[layout.chunk_unit(a)]["range"] for a, _ in plan.segments(shot)]
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def normalize_shot(ctx: RunContext, shot: Shot) -> None:
    """Rewrite the shot's depth as ``(x - lo) / (hi - lo) * 2 - 1``, unit by unit, in place."""
    store, plan = ctx.store, ctx.plan
    pending = pending_segments(store, layout.NORMALIZE, plan, shot)
    if not pending:
        return
    if plan.normalize == "global":
        ranges = [shot_range(store, layout.MERGE, plan, s) for s in plan.shots]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    else:
        lo, hi = shot_range(store, layout.MERGE, plan, shot)
    merged = store.done_units(layout.MERGE)
    items = [(a, b, unit, merged[unit]["crc"]) for a, b, unit in pending]
    for _ in ctx.executor.map(normalize_unit, items, lo, hi, ctx.cfg.exact_dtype,
                              timer=ctx.timers[layout.NORMALIZE]):
        pass


def normalize_unit(ctx: UnitContext, segment: tuple[int, int, str, int], lo: float, hi: float,
                   exact_dtype: str | None) -> None:
    """Task: normalize frames ``[first, stop)`` in place, unless they are no longer the merge's
    bytes (``merged_crc``: normalized already by a run killed before its record)."""
    first, stop, unit_id, merged_crc = segment
    depth = ctx.store.array(layout.DEPTH)
    frames = np.asarray(depth[first:stop])
    if checksum(frames) == merged_crc:
        frames = normalized(frames, lo, hi, exact_dtype)
        depth.write(first, frames)
    ctx.done(layout.NORMALIZE, unit_id, {"range": value_range(frames), "crc": checksum(frames)})
    ctx.advance(stop - first)

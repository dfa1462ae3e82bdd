"""Merge stage: the mean of the co-aligned observations of each frame, then [-1, 1] in place.

``merge`` writes ``depth [T, H, W]`` as ``mean_k(s_k * (x_k - global_min) + t_k)`` over the
observations of each frame, one unit (shard) of frames at a time; its records hold each
unit's min, max and checksum. ``normalize`` then rewrites each unit in place as
``(x - min) / (max - min) * 2 - 1`` with min/max over all frames: a unit whose bytes no
longer match the merge's checksum was normalized already (shard writes are atomic), so a
kill between the write and the record costs nothing. Snippet maps come from the scratch:
read (``depth`` scratch) or decoded again on the device (``latent`` scratch).

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
from ...storage.run_store import CheckedArray, RunStore
from ..execution import Executor, UnitContext
from ..latents import Geometry, decode_depth
from ..model import TORCH_DTYPES, Model
from ..plan import RunPlan
from ..progress import Progress
from ..snippets import SnippetGroup
from .chunks import pending_chunks
from .series import SeriesRows

SUB_CHUNK = 16  # frames merged at once inside a unit (bounds the float64 temporaries)
DECODE_BATCH = 8


class DecodedSnippets:
    """Latent scratch ``[N, L, 4, h, w]`` read as depth ``[N, L, H, W]``: ``x[lo:hi, slot]`` decodes on the device."""

    def __init__(self, latents: CheckedArray, model: Model, geometry: Geometry):
        self.latents, self.model, self.geometry = latents, model, geometry
        self.shape = (*latents.shape[:2], *geometry.depth)

    def __getitem__(self, selection: tuple[slice, int]) -> np.ndarray:
        z = torch.from_numpy(np.asarray(self.latents[selection])).to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            maps = [decode_depth(self.model.vae, z[i:i + DECODE_BATCH], self.geometry)
                    for i in range(0, len(z), DECODE_BATCH)]
        return torch.cat(maps).to(self.model.storage_torch_dtype).cpu().numpy()


def checksum(frames: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frames, dtype=np.float32).tobytes())


def merge_frames(snippets: list, groups: list[SnippetGroup], scales: list[np.ndarray],
                 shifts: list[np.ndarray], minima: list[float], first: int, stop: int,
                 exact_dtype: str | None = None) -> np.ndarray:
    """Mean of the aligned observations of frames ``[first, stop)``: float64 ``[stop-first, H, W]``.

    ``snippets``: one ``[N_g, L_g, H, W]`` array-like per group (local snippet indices);
    ``minima``: per group, the minimum its maps are shifted by (its shot's). Frames no
    snippet observes are 0.
    """
    h, w = snippets[0].shape[-2:]
    observations: list[list] = [[] for _ in range(stop - first)]
    total = np.zeros((stop - first, h, w), dtype=np.float64)
    count = np.zeros(stop - first, dtype=np.int64)
    for arr, g, s, t, global_min in zip(snippets, groups, scales, shifts, minima):
        for slot in reversed(range(g.length)):  # for one frame: snippets in ascending order
            lo, hi = g.snippets_touching(first, stop, slot)
            if hi <= lo:
                continue
            at = np.arange(lo, hi) + g.offset + slot * g.dilation - first
            if exact_dtype is None:
                x = np.asarray(arr[lo:hi, slot], dtype=np.float64)
                total[at] += s[lo:hi, None, None] * (x - global_min) + t[lo:hi, None, None]
                count[at] += 1
                continue
            dtype = TORCH_DTYPES[exact_dtype]
            x = torch.from_numpy(np.asarray(arr[lo:hi, slot])).to(dtype)
            shifted = x - torch.tensor(global_min, dtype=dtype)
            scale = torch.from_numpy(s[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            shift = torch.from_numpy(t[lo:hi].astype(np.float32)).to(dtype)[:, None, None]
            for frame, value in zip(at, shifted * scale + shift):
                observations[frame].append(value)
    if exact_dtype is None:
        return total / np.maximum(count, 1)[:, None, None]
    return np.stack([torch.stack(obs).mean(0).double().numpy() if obs else np.zeros((h, w))
                     for obs in observations])


def normalized(x: np.ndarray, lo: float, hi: float, exact_dtype: str | None = None) -> np.ndarray:
    """``(x - lo) / (hi - lo) * 2 - 1`` as float32 (a constant video gives 0), in float64 or in ``exact_dtype``."""
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    if exact_dtype is None:
        return ((np.asarray(x, dtype=np.float64) - lo) / (hi - lo) * 2 - 1).astype(np.float32)
    dtype = TORCH_DTYPES[exact_dtype]
    low, high = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    shifted = torch.from_numpy(np.asarray(x)).to(dtype) - low
    return (shifted / (high - low) * 2.0 - 1.0).float().numpy()


def snippet_sources(store: RunStore, plan: RunPlan, model: Model) -> list:
    """Per group, its snippet depth maps as an ``[N_g, L_g, H, W]`` array-like."""
    series = {j: store.array(layout.snippet_scratch(j)) for j, rows in enumerate(plan.series_rows) if rows}
    if plan.scratch == "latent":
        series = {j: DecodedSnippets(a, model, plan.geometry) for j, a in series.items()}
    return [SeriesRows(series[g.series], g.offset, g.count, g.length) for g in plan.groups]


def merge(store: RunStore, plan: RunPlan, executor: Executor, scales: list[np.ndarray], shifts: list[np.ndarray],
          minima: list[float], progress: Progress, exact_dtype: str | None = None) -> None:
    """Write the merged depth unit by unit (``merge_unit`` tasks)."""
    t, unit = plan.num_frames, plan.frame_unit
    timer = progress.stage(layout.MERGE, t)
    pending = list(pending_chunks(store, layout.MERGE, timer, t, unit))
    if not pending:
        return
    store.require(layout.DEPTH, (t, *plan.geometry.depth), "float32", layout.FRAME_DIMS, unit,
                  attrs={"coordinates": layout.TIME})
    group_minima = [minima[k] for k in plan.shot_of_group()]
    for _ in executor.map(merge_unit, pending, plan, scales, shifts, group_minima, exact_dtype, timer=timer):
        pass


def merge_unit(ctx: UnitContext, chunk: tuple[int, int, str], plan: RunPlan, scales: list[np.ndarray],
               shifts: list[np.ndarray], group_minima: list[float], exact_dtype: str | None) -> None:
    """Task: merge frames ``[first, stop)`` into ``depth``; the record holds the unit's checksum
    and, per shot it touches, the range of its merged values."""
    first, stop, unit_id = chunk
    snippets = snippet_sources(ctx.store, plan, ctx.model)
    frames = np.empty((stop - first, *plan.geometry.depth), dtype=np.float32)
    for a in range(first, stop, SUB_CHUNK):
        b = min(a + SUB_CHUNK, stop)
        frames[a - first:b - first] = merge_frames(snippets, plan.groups, scales, shifts, group_minima, a, b,
                                                   exact_dtype)
        ctx.advance(b - a)
    ctx.store.array(layout.DEPTH).write(first, frames)
    ranges = {str(k): [float(frames[a - first:b - first].min()), float(frames[a - first:b - first].max())]
              for k, a, b in plan.segments(first, stop)}
    ctx.done(layout.MERGE, unit_id, {"range": ranges, "crc": checksum(frames)})


def value_ranges(store: RunStore, plan: RunPlan) -> list[tuple[float, float]]:
    """Per shot, the (min, max) its frames are normalized with: the shot's own, or, with
    ``plan.normalize == "global"``, the whole video's for every shot."""
    ranges = [(np.inf, -np.inf)] * len(plan.shots)
    for record in store.done_units(layout.MERGE).values():
        for k, (lo, hi) in record["range"].items():
            old = ranges[int(k)]
            ranges[int(k)] = (min(old[0], lo), max(old[1], hi))
    if plan.normalize == "global":
        whole = (min(lo for lo, _ in ranges), max(hi for _, hi in ranges))
        ranges = [whole] * len(ranges)
    return ranges


def normalize(store: RunStore, plan: RunPlan, executor: Executor, progress: Progress,
              exact_dtype: str | None = None) -> None:
    """Rewrite ``depth`` as ``(x - lo) / (hi - lo) * 2 - 1`` per shot (``value_ranges``), unit by unit, in place."""
    t = plan.num_frames
    timer = progress.stage(layout.NORMALIZE, t)
    merged = store.done_units(layout.MERGE)
    ranges = value_ranges(store, plan)
    pending = [(first, stop, unit_id, merged[unit_id]["crc"])
               for first, stop, unit_id in pending_chunks(store, layout.NORMALIZE, timer, t, plan.frame_unit)]
    for _ in executor.map(normalize_unit, pending, plan, ranges, exact_dtype, timer=timer):
        pass


def normalize_unit(ctx: UnitContext, chunk: tuple[int, int, str, int], plan: RunPlan,
                   ranges: list[tuple[float, float]], exact_dtype: str | None) -> None:
    """Task: normalize frames ``[first, stop)`` in place, unless they are no longer the merge's
    bytes (``merged_crc``: normalized already by a run killed before its record)."""
    first, stop, unit_id, merged_crc = chunk
    depth = ctx.store.array(layout.DEPTH)
    frames = np.asarray(depth[first:stop])
    if checksum(frames) == merged_crc:
        for k, a, b in plan.segments(first, stop):
            frames[a - first:b - first] = normalized(frames[a - first:b - first], *ranges[k], exact_dtype)
        depth.write(first, frames)
    ctx.done(layout.NORMALIZE, unit_id, {"crc": checksum(frames)})
    ctx.advance(stop - first)

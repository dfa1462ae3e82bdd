"""The run plan: what the config and the ingested video decide for every later stage.

Shots, snippet groups, the batch stream, the scratch kind of every shot and the per-frame
units are fixed once per run store (``RunFacts.plan``), so a resumed run cuts its work
exactly as before. Every shot is planned as a video of its own (``shots.model``): no
snippet crosses a cut. Snippets of one configured dilation (a *series*) share the
co-alignment arrays, indexed by their global start frame.

Snippet scratch (``--scratch``): the snippet stage decodes every snippet frame once, to depth
(for the shot's minimum and the co-alignment samples); the merge needs those maps again
once the shot is co-aligned.
- ``depth`` keeps them at full resolution in the compute precision, losslessly compressed:
  the method's decode count, the shot's maps on disk until its merge;
- ``latent`` keeps the snippet latents (64x fewer values) and decodes them again at merge
  time: one more VAE decode per snippet frame, a small fraction of the disk;
- ``auto`` (default) takes ``depth`` for every shot whose scratch fits ``--scratch-budget``
  (default 8 GiB, at most half the free disk) and ``latent`` only for a take too long for it
  alone. The runner keeps the shots in flight within the budget (it waits for merges).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..storage import layout
from .batching import SnippetBatch, default_batch_size, last_batch_of_shots, plan_batches
from .config import ExecutionOptions, RunConfig
from .facts import PlanChoices, RunFacts
from .latents import Geometry
from .shots.model import Shot, plan_shot_snippets, shot_refinement_dilations, shots_from_cuts
from .snippets import SnippetGroup

# Stored bytes / raw bytes the budget counts for a shot's scratch before it has written
# anything (after, its measured bytes count). Scene depth in fp16 stores at 0.03-0.16 of raw
# (benchmarks/RESULTS.md, `rdengine bench scratch-codecs`); 0.6 leaves room for noisier maps.
STORED_FRACTION = {"depth": 0.6, "latent": 0.95}


@dataclass(frozen=True)
class RunPlan:
    """Every decision later stages share.

    ``groups``: the snippet groups of every shot, in shot order; ``shot_groups[k]``: the
    indices of shot ``k``'s groups; ``series_rows[j]``: rows of series ``j``'s co-alignment
    arrays (global start frames; 0: no group). ``batches``: the snippet stream
    (``batching``); ``last_batch[k]``: the last batch holding a snippet of shot ``k`` (-1:
    none). ``scratch[k]``: ``depth`` or ``latent`` for shot ``k``; ``scratch_budget``: bytes
    of snippet scratch the shots in flight may hold. ``frame_unit``: frames per shard of the
    per-frame arrays; ``refine_dilations[k]``: shot ``k``'s refinement schedule;
    ``normalize``: ``shot`` or ``global``.
    """

    num_frames: int
    geometry: Geometry
    shots: list[Shot]
    groups: list[SnippetGroup]
    shot_groups: list[list[int]]
    series_rows: list[int]
    notes: list[str]
    batch_size: int
    batches: list[SnippetBatch]
    last_batch: np.ndarray
    scratch: tuple[str, ...]
    scratch_budget: int
    map_bytes: dict[str, int]
    frame_unit: int
    refine_dilations: list[list[int]]
    refine_length: int
    normalize: str

    @property
    def snippets(self) -> int:
        return sum(g.count for g in self.groups)

    def shot_of_group(self) -> list[int]:
        """The shot index of every group."""
        return [k for k, members in enumerate(self.shot_groups) for _ in members]

    def shot_snippets(self, k: int) -> int:
        return sum(self.groups[g].count for g in self.shot_groups[k])

    def shot_maps(self, k: int) -> int:
        """Snippet frames (decoded maps) of shot ``k``."""
        return sum(self.groups[g].count * self.groups[g].length for g in self.shot_groups[k])

    def scratch_estimate(self, k: int) -> int:
        """Bytes shot ``k``'s scratch is expected to take on disk (before it is written)."""
        kind = self.scratch[k]
        return int(self.shot_maps(k) * self.map_bytes[kind] * STORED_FRACTION[kind])

    def segments(self, shot: Shot) -> list[tuple[int, int]]:
        """``[(first, stop)]``: the shot's frames cut at the per-frame shard boundaries (its units)."""
        unit = self.frame_unit
        edges = [shot.start, *range((shot.start // unit + 1) * unit, shot.stop, unit), shot.stop]
        return list(zip(edges[:-1], edges[1:]))

    @property
    def refine_steps(self) -> int:
        return max(map(len, self.refine_dilations), default=0)


def frame_unit(geometry: Geometry, requested: int | None = None) -> int:
    """Frames per shard of the per-frame arrays: ``requested`` (``--unit-frames``), else sized by
    the largest array, float32 depth."""
    return requested or layout.unit_rows(4 * int(np.prod(geometry.depth)))


def map_bytes(geometry: Geometry, itemsize: int) -> dict[str, int]:
    """Raw bytes of one snippet frame's scratch, per kind."""
    return {"depth": itemsize * int(np.prod(geometry.depth)), "latent": itemsize * 4 * int(np.prod(geometry.latent))}


def scratch_budget(requested: int, folder: Path) -> int:
    """The budget: ``requested`` bytes, at most half the free disk where the store lives."""
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    return int(min(requested, free // 2))


def choose_scratch(mode: str, budget: int, maps: list[int], sizes: dict[str, int]) -> tuple[str, ...]:
    """Per shot: ``mode`` unless ``auto``, else ``depth`` if the shot's ``maps`` fit ``budget`` alone."""
    if mode != "auto":
        return tuple(mode for _ in maps)
    return tuple("depth" if n * sizes["depth"] * STORED_FRACTION["depth"] <= budget else "latent" for n in maps)


def make_plan(facts: RunFacts, cfg: RunConfig, opts: ExecutionOptions, num_frames: int, geometry: Geometry,
              itemsize: int, free_device_bytes: int | None, device_type: str, folder: Path) -> RunPlan:
    """The plan for a run with ``facts`` (the store's): its recorded choices if any (``facts.plan``),
    else new ones (the caller records ``PlanChoices`` of the result). ``facts.frame_unit``
    (recorded before ingest) sizes the per-frame units; ``facts.cuts`` split the video into shots."""
    shots = shots_from_cuts(list(facts.cuts or ()), num_frames)
    by_shot, notes = plan_shot_snippets(shots, cfg.dilations, cfg.snippet_lens, cfg.cap_dilation)
    groups = [g for shot_groups in by_shot for g in shot_groups]
    at = [0, *np.cumsum([len(s) for s in by_shot])]
    shot_groups = [list(range(a, b)) for a, b in zip(at[:-1], at[1:])]
    rows = [max([g.offset + g.count for g in groups if g.series == j], default=0) for j in range(len(cfg.dilations))]
    sizes = map_bytes(geometry, itemsize)
    maps = [sum(groups[g].count * groups[g].length for g in members) for members in shot_groups]
    if facts.plan:
        choices = facts.plan
    else:
        batch = opts.batch_size or default_batch_size(device_type, free_device_bytes, int(np.prod(geometry.frame)))
        budget = scratch_budget(opts.scratch_budget, folder)
        choices = PlanChoices(batch, choose_scratch(opts.scratch, budget, maps, sizes), budget)
    batches = plan_batches(shot_groups, groups, choices.batch_size)
    shot_of_group = [k for k, members in enumerate(shot_groups) for _ in members]
    length = cfg.refine_snippet_len
    refine = shot_refinement_dilations(shots, cfg.refine_steps, cfg.refine_start_dilation, length,
                                       cfg.cap_dilation) if cfg.refine_steps else [[] for _ in shots]
    return RunPlan(num_frames=num_frames, geometry=geometry, shots=shots, groups=groups, shot_groups=shot_groups,
                   series_rows=rows, notes=notes, batch_size=choices.batch_size, batches=batches,
                   last_batch=last_batch_of_shots(batches, shot_of_group, len(shots)), scratch=choices.scratch,
                   scratch_budget=choices.scratch_budget, map_bytes=sizes, frame_unit=facts.frame_unit,
                   refine_dilations=refine, refine_length=length, normalize=cfg.normalize)


def plan_choices(plan: RunPlan) -> PlanChoices:
    return PlanChoices(plan.batch_size, plan.scratch, plan.scratch_budget)

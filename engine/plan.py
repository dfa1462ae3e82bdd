"""The run plan: what the config and the ingested video decide for every later stage.

Shots, snippet groups, work units, UNet batch size and the kind of snippet scratch are
fixed once per run store (``info.plan``), so a resumed run cuts its work exactly as before.
Every shot is planned as a video of its own (``shots.plan_shot_snippets``): no snippet
crosses a cut. Snippets of one configured dilation (a *series*) share the run store's
arrays, indexed by their global start frame.

Snippet scratch (``--scratch``): the snippet stage decodes every snippet frame to depth (for
the global minimum and the co-alignment samples); the merge needs those maps again.
- ``depth`` keeps them at full resolution in the compute precision: no extra device work,
  ``frames x observations x H x W x 2-4`` bytes of disk until the merge is done;
- ``latent`` keeps the snippet latents (64x fewer values) and decodes them again at merge
  time: one more VAE decode per snippet frame, a small fraction of the disk;
- ``auto`` (default) takes ``depth`` while it needs at most ``--scratch-limit`` (default
  0.25 GiB: short clips) and half the free disk, ``latent`` beyond.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..storage import layout
from .batching import SnippetUnit, default_batch_size, plan_units
from .config import ExecutionOptions, RunConfig
from .latents import Geometry
from .shots.model import Shot, plan_shot_snippets, shot_refinement_dilations, shots_from_cuts
from .snippets import SnippetGroup


@dataclass(frozen=True)
class RunPlan:
    """Every decision later stages share.

    ``groups``: the snippet groups of every shot, in shot order; ``shot_groups[k]``: the
    indices of shot ``k``'s groups; ``series_rows[j]``/``series_slots[j]``: shape of series
    ``j``'s arrays (global start frames x snippet slots; 0 rows: no group). ``frame_unit``:
    frames per unit of the per-frame stages; ``units``: the snippet stage's units;
    ``scratch``: ``depth`` or ``latent``; ``refine_dilations[k]``: shot ``k``'s refinement
    schedule; ``normalize``: ``shot`` or ``global``.
    """

    num_frames: int
    geometry: Geometry
    shots: list[Shot]
    groups: list[SnippetGroup]
    shot_groups: list[list[int]]
    series_rows: list[int]
    series_slots: list[int]
    notes: list[str]
    batch_size: int
    scratch: str
    frame_unit: int
    snippet_unit: int
    units: list[SnippetUnit]
    refine_dilations: list[list[int]]
    refine_length: int
    normalize: str

    @property
    def snippets(self) -> int:
        return sum(g.count for g in self.groups)

    def shot_of_group(self) -> list[int]:
        """The shot index of every group."""
        return [k for k, members in enumerate(self.shot_groups) for _ in members]

    def segments(self, first: int, stop: int) -> list[tuple[int, int, int]]:
        """``(shot, a, b)``: the part ``[a, b)`` of frames ``[first, stop)`` in each shot it touches."""
        return [(k, max(first, s.start), min(stop, s.stop)) for k, s in enumerate(self.shots)
                if s.start < stop and s.stop > first]


def frame_unit(geometry: Geometry, requested: int | None = None) -> int:
    """Frames per unit of the per-frame arrays: ``requested`` (``--unit-frames``), else sized by
    the largest array, float32 depth."""
    return requested or layout.unit_rows(4 * int(np.prod(geometry.depth)))


def map_bytes(geometry: Geometry, scratch: str, itemsize: int) -> int:
    """Bytes of one snippet frame's scratch map."""
    return itemsize * int(np.prod(geometry.depth) if scratch == "depth" else 4 * np.prod(geometry.latent))


def choose_scratch(mode: str, limit: int, groups: list[SnippetGroup], geometry: Geometry, itemsize: int,
                   folder: Path) -> str:
    """``depth`` or ``latent`` for ``mode`` (see the module docstring)."""
    if mode != "auto":
        return mode
    need = sum(g.count * g.length for g in groups) * map_bytes(geometry, "depth", itemsize)
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    return "depth" if need <= min(limit, free // 2) else "latent"


def make_plan(info: dict, cfg: RunConfig, opts: ExecutionOptions, num_frames: int, geometry: Geometry,
              itemsize: int, free_device_bytes: int | None, device_type: str, folder: Path) -> tuple[RunPlan, dict]:
    """The plan for a run with ``info`` (the store's): its recorded choices if any, else new
    ones. Returns the plan and the ``info`` entries to record (empty when nothing is new).
    ``info.frame_unit`` (recorded before ingest) sizes the per-frame units; ``info.cuts`` (the
    cuts ingest found or read) split the video into shots."""
    shots = shots_from_cuts(info.get("cuts", []), num_frames)
    by_shot, notes = plan_shot_snippets(shots, cfg.dilations, cfg.snippet_lens, cfg.cap_dilation)
    groups = [g for shot_groups in by_shot for g in shot_groups]
    at = [0, *np.cumsum([len(s) for s in by_shot])]
    shot_groups = [list(range(a, b)) for a, b in zip(at[:-1], at[1:])]
    series = range(len(cfg.dilations))
    rows = [max([g.offset + g.count for g in groups if g.series == j], default=0) for j in series]
    slots = [max([g.length for g in groups if g.series == j], default=0) for j in series]
    recorded = info.get("plan")
    if recorded:
        batch, scratch, snippet_unit = recorded["batch_size"], recorded["scratch"], recorded["snippet_unit"]
    else:
        batch = opts.batch_size or default_batch_size(device_type, free_device_bytes, int(np.prod(geometry.frame)))
        scratch = choose_scratch(opts.scratch, opts.scratch_limit, groups, geometry, itemsize, folder)
        per_start = sum(slots) * map_bytes(geometry, scratch, itemsize)
        snippet_unit = opts.unit_frames or layout.unit_rows(per_start)
    length = cfg.refine_snippet_len
    refine = shot_refinement_dilations(shots, cfg.refine_steps, cfg.refine_start_dilation, length,
                                       cfg.cap_dilation) if cfg.refine_steps else [[] for _ in shots]
    plan = RunPlan(num_frames=num_frames, geometry=geometry, shots=shots, groups=groups, shot_groups=shot_groups,
                   series_rows=rows, series_slots=slots, notes=notes, batch_size=batch, scratch=scratch,
                   frame_unit=info["frame_unit"], snippet_unit=snippet_unit,
                   units=plan_units(groups, snippet_unit, batch),
                   refine_dilations=refine, refine_length=length, normalize=cfg.normalize)
    new = {} if recorded else {"plan": {"batch_size": batch, "scratch": scratch, "snippet_unit": snippet_unit},
                               "notes": notes, "expected_units": expected_units(plan)}
    return plan, new


def expected_units(plan: RunPlan) -> dict[str, int]:
    """Units each stage records when complete (``inspect`` compares against them)."""
    chunks = -(-plan.num_frames // plan.frame_unit)
    units = {layout.INGEST: chunks, layout.SNIPPETS: len(plan.units), layout.COALIGN: len(plan.shots),
             layout.MERGE: chunks, layout.NORMALIZE: chunks}
    steps = max(map(len, plan.refine_dilations))
    if steps:
        units.update({layout.REFINE_ENCODE: chunks, layout.REFINE: steps * chunks, layout.REFINE_DECODE: chunks})
    return units

"""The stages, declared once: what each reads and writes, its units, where it runs, its function.

Everything else is derived from this table: the order the runner walks (shot, stage) tasks
in, which units a stage records (``units``, for ``inspect`` and ``verify``), when an
intermediate array can be released (every stage reading it is done), what to recompute when
data is damaged (the stages writing it), and which stage makes a shot's depth final.

Scopes: ``film`` runs once before the shots (ingest: the whole input, which also finds the
cuts); ``stream`` is the snippet stream, cut into units across shots (``batching``);
``shot`` stages run for each shot, in table order, as soon as their inputs are ready;
``end`` runs once every shot is through.

Adding a stage: a module in ``engine/stages/`` with a driver ``run(ctx, shot)`` that hands
unit tasks to ``ctx.executor`` (see ``merge.merge_shot``), its arrays named in
``storage/layout.py``, and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...storage import layout
from ..config import RunConfig
from ..plan import RunPlan
from ..shots.model import Shot
from . import coalign, export, merge, refine

FILM, STREAM, SHOT, END = "film", "stream", "shot", "end"
HOST, DEVICE = "host", "device"

# Families of arrays (what the table says a stage reads and writes)
RGB_LATENTS = layout.RGB_LATENTS  # [T, 4, h, w]
SCRATCH = "snippet scratch"  # per snippet unit: depth / latent / samples (stages.scratch)
SOLUTION = layout.COALIGN_GROUP  # co-alignment scales and shifts
DEPTH = layout.DEPTH  # [T, H, W]: merged, normalized in place, refined in place: the result
REFINE_LATENTS = "refine latents"  # [T, 4, h, w] x 2 buffers
OUTPUTS = "outputs"  # files beside the store
KEPT = (DEPTH, SOLUTION, OUTPUTS)  # never released


@dataclass(frozen=True)
class Stage:
    """One row of the table.

    ``units(plan, shot)``: the unit ids it records for ``shot`` (shot scope); ``is_done(ctx,
    shot)``: whether its work for ``shot`` is recorded, where that is more than its units (the
    export stage: the outputs asked for in this run); ``lane(plan,
    shot)``: ``device`` (runs on the run's thread, in shot order, between snippet units) or
    ``host`` (beside the device work on a GPU or a cluster); ``enabled(cfg)``: whether the run
    has it; ``after_all``: it waits for the previous stage on *every* shot (``--normalize
    global``); ``in_order``: shot ``k`` waits for this stage of shot ``k - 1`` (outputs written
    in order).
    """

    name: str
    scope: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    run: Callable | None = None
    units: Callable[[RunPlan, Shot], list[str]] | None = None
    is_done: Callable | None = None
    lane: Callable[[RunPlan, Shot], str] = lambda plan, shot: HOST
    enabled: Callable[[RunConfig], bool] = lambda cfg: True
    after_all: Callable[[RunPlan], bool] = lambda plan: False
    in_order: bool = False


def segment_units(plan: RunPlan, shot: Shot) -> list[str]:
    return [layout.chunk_unit(a) for a, _ in plan.segments(shot)]


def refine_step_units(plan: RunPlan, shot: Shot) -> list[str]:
    return [layout.refine_unit(i, a) for i in range(len(plan.refine_dilations[shot.index]))
            for a, _ in plan.segments(shot)]


def refining(cfg: RunConfig) -> bool:
    return cfg.refine_steps > 0


STAGES: tuple[Stage, ...] = (
    Stage(layout.INGEST, FILM, reads=(), writes=(RGB_LATENTS,)),
    Stage(layout.SNIPPETS, STREAM, reads=(RGB_LATENTS,), writes=(SCRATCH,)),
    Stage(layout.COALIGN, SHOT, reads=(SCRATCH,), writes=(SOLUTION,), run=coalign.coalign_shot,
          units=lambda plan, shot: [layout.chunk_unit(shot.start)] if plan.shot_groups[shot.index] else []),
    Stage(layout.MERGE, SHOT, reads=(SCRATCH, SOLUTION), writes=(DEPTH,), run=merge.merge_shot, units=segment_units,
          lane=lambda plan, shot: DEVICE if plan.scratch[shot.index] == "latent" else HOST),
    Stage(layout.NORMALIZE, SHOT, reads=(DEPTH,), writes=(DEPTH,), run=merge.normalize_shot, units=segment_units,
          after_all=lambda plan: plan.normalize == "global"),
    Stage(layout.REFINE_ENCODE, SHOT, reads=(DEPTH,), writes=(REFINE_LATENTS,), run=refine.refine_encode_shot,
          units=segment_units, lane=lambda plan, shot: DEVICE, enabled=refining),
    Stage(layout.REFINE, SHOT, reads=(RGB_LATENTS, REFINE_LATENTS), writes=(REFINE_LATENTS,),
          run=refine.refine_steps_shot, units=refine_step_units, lane=lambda plan, shot: DEVICE, enabled=refining),
    Stage(layout.REFINE_DECODE, SHOT, reads=(REFINE_LATENTS,), writes=(DEPTH,), run=refine.refine_decode_shot,
          units=segment_units, lane=lambda plan, shot: DEVICE, enabled=refining),
    Stage(layout.EXPORT, SHOT, reads=(DEPTH,), writes=(OUTPUTS,), run=export.export_shot,
          units=lambda plan, shot: [], is_done=export.shot_exported, in_order=True),
    Stage(layout.COMPLETE, END, reads=(DEPTH,), writes=(OUTPUTS,), run=export.finish),
)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def shot_stages(cfg: RunConfig) -> list[Stage]:
    """The shot-scope stages of a run with ``cfg``, in order."""
    return [s for s in STAGES if s.scope == SHOT and s.enabled(cfg)]


def readers(family: str, cfg: RunConfig) -> list[Stage]:
    return [s for s in STAGES if family in s.reads and s.enabled(cfg)]


def writers(family: str, cfg: RunConfig) -> list[Stage]:
    return [s for s in STAGES if family in s.writes and s.enabled(cfg)]


def final_depth_stage(cfg: RunConfig) -> Stage:
    """The last shot stage that writes ``depth``: once it is done, the shot's depth is final."""
    return [s for s in shot_stages(cfg) if DEPTH in s.writes][-1]


def stage_order() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES)

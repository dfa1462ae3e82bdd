"""Co-alignment stage: solve one shot's snippet graph on its stored samples; commit scales and shifts.

One unit per shot (``chunk_unit(shot.start)``): its groups' samples (``stages.scratch``) go
to ``solve`` with the shot's own minimum depth, and the scales and shifts land in
``coalign/scales_g{j}`` and ``coalign/shifts_g{j}`` (float64, row = the snippet's global start
frame). The record holds the objective, iterations and loss history. A shot's solution
depends on its own frames only. Runs in the run's process (about 1% of the time).
"""

from __future__ import annotations

import shutil

import numpy as np

from ...storage import layout
from ...storage.run_store import CheckedArray, RunStore
from ..coalign import sample_pixels, solve
from ..model import TORCH_DTYPES
from ..plan import RunPlan
from ..run_context import RunContext
from ..shots.model import Shot
from .scratch import SnippetSamples, UnitLocator

STAGE = layout.COALIGN
COALIGN_ROWS = 4096  # rows per chunk of the scales and shifts arrays


def solution_arrays(store: RunStore, plan: RunPlan) -> dict[int, tuple[CheckedArray, CheckedArray]]:
    """The scales and shifts arrays of every series with snippets (created if absent)."""
    return {j: tuple(store.require(name(j), (rows,), "float64", (f"snippet_g{j}",), COALIGN_ROWS,
                                   inner=(COALIGN_ROWS,)) for name in (layout.coalign_scales, layout.coalign_shifts))
            for j, rows in enumerate(plan.series_rows) if rows}


def coalign_shot(ctx: RunContext, shot: Shot) -> None:
    """Solve shot ``shot`` unless recorded; the solution goes to the co-alignment arrays."""
    store, plan, stream = ctx.store, ctx.plan, ctx.stream
    groups = [plan.groups[i] for i in plan.shot_groups[shot.index]]
    unit = layout.chunk_unit(shot.start)
    if store.is_done(STAGE, unit) or not groups:
        return
    arrays = solution_arrays(store, plan)
    locator = UnitLocator(stream.units_of_shot(shot.index))
    sample_shape = sample_pixels(np.zeros(plan.geometry.depth)).shape
    samples = [SnippetSamples(store, stream.index, locator, k, plan.groups[k].length, sample_shape)
               for k in plan.shot_groups[shot.index]]
    spill = store.scratch_folder(f"{STAGE}-{shot.index}")
    result = solve(samples, [g.dilation for g in groups], [g.length for g in groups], shot.num_frames,
                   stream.shot_minimum(shot.index), solver=ctx.cfg.coalign, memory_budget=ctx.opts.coalign_memory,
                   spill_folder=spill,
                   shift_dtype=TORCH_DTYPES[ctx.cfg.exact_dtype] if ctx.cfg.exact_dtype else None)
    shutil.rmtree(spill, ignore_errors=True)
    for g, scales, shifts in zip(groups, result.scales, result.shifts):
        arrays[g.series][0].write(g.offset, scales)
        arrays[g.series][1].write(g.offset, shifts)
    store.mark_done(STAGE, unit, {"objective": float(result.objective), "iterations": int(result.iterations),
                                  "solver": result.solver, "history": result.loss_history.tolist()})
    ctx.timers[STAGE].advance(sum(g.count for g in groups))


def shot_solution(store: RunStore, plan: RunPlan, shot: Shot) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per group of ``shot``: (scales, shifts) of its snippets, float64."""
    scales, shifts = [], []
    for k in plan.shot_groups[shot.index]:
        g = plan.groups[k]
        for name, out in ((layout.coalign_scales, scales), (layout.coalign_shifts, shifts)):
            out.append(np.asarray(store.array(name(g.series))[g.offset:g.offset + g.count], dtype=np.float64))
    return scales, shifts


def solved_note(store: RunStore, plan: RunPlan, solved_now: set[int]) -> str | None:
    """What the co-alignment did in this run (None when every shot was solved before)."""
    if not solved_now:
        return None
    records = store.done_units(STAGE)
    now = [records[layout.chunk_unit(plan.shots[k].start)] for k in sorted(solved_now)
           if layout.chunk_unit(plan.shots[k].start) in records]
    if len(now) == 1:
        record = now[0]
        where = f" of shot {min(solved_now)}" if len(plan.shots) > 1 else ""
        return (f"co-alignment ({record['solver']}){where}: objective {record['objective']:.6g} after "
                f"{record['iterations']} iterations")
    objectives = [r["objective"] for r in now]
    return (f"co-alignment ({now[0]['solver']}) of {len(now)} shots: {sum(r['iterations'] for r in now)} iterations "
            f"in all, objective {min(objectives):.4g}..{max(objectives):.4g}")

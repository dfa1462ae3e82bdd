"""Co-alignment stage: solve each shot's snippet graph on its stored samples; commit scales and shifts.

One unit per shot: its groups' samples (rows of the series arrays) go to ``solve`` with
the shot's own minimum depth, and the scales and shifts land in ``coalign/scales_g{j}``
and ``coalign/shifts_g{j}`` (float64, row = the snippet's global start frame, like the
snippet arrays). The record holds the objective, iterations and loss history. A shot's
solution depends on its own frames only.
"""

from __future__ import annotations

import shutil

import numpy as np

from ...storage import layout
from ...storage.run_store import CheckedArray, RunStore
from ..coalign import solve
from ..model import TORCH_DTYPES
from ..plan import RunPlan
from ..progress import Progress
from .series import SeriesRows

STAGE = layout.COALIGN
COALIGN_ROWS = 4096  # rows per chunk of the scales and shifts arrays


def solution_arrays(store: RunStore, plan: RunPlan) -> dict[int, tuple[CheckedArray, CheckedArray]]:
    """The scales and shifts arrays of every series with snippets (created if absent)."""
    return {j: tuple(store.require(name(j), (rows,), "float64", (f"snippet_g{j}",), COALIGN_ROWS,
                                   inner=(COALIGN_ROWS,)) for name in (layout.coalign_scales, layout.coalign_shifts))
            for j, rows in enumerate(plan.series_rows) if rows}


def coalign(store: RunStore, plan: RunPlan, minima: list[float], solver: str, memory_budget: int,
            progress: Progress, exact_dtype: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per group of the plan, the (scales, shifts) of its snippets; solved shot by shot unless stored."""
    timer = progress.stage(STAGE, plan.snippets, unit="snippets")
    arrays: dict | None = None
    for k, shot in enumerate(plan.shots):
        groups = [plan.groups[i] for i in plan.shot_groups[k]]
        unit = layout.chunk_unit(shot.start)
        if store.is_done(STAGE, unit):
            timer.advance(sum(g.count for g in groups), reused=True)
            continue
        arrays = arrays or solution_arrays(store, plan)
        samples = [SeriesRows(store.array(layout.snippet_samples(g.series)), g.offset, g.count, g.length)
                   for g in groups]
        spill = store.scratch_folder(STAGE)
        result = solve(samples, [g.dilation for g in groups], [g.length for g in groups], shot.num_frames,
                       minima[k], solver=solver, memory_budget=memory_budget, spill_folder=spill,
                       shift_dtype=TORCH_DTYPES[exact_dtype] if exact_dtype else None)
        shutil.rmtree(spill, ignore_errors=True)
        for g, scales, shifts in zip(groups, result.scales, result.shifts):
            arrays[g.series][0][g.offset:g.offset + g.count] = scales
            arrays[g.series][1][g.offset:g.offset + g.count] = shifts
        store.mark_done(STAGE, unit, {"objective": float(result.objective), "iterations": int(result.iterations),
                                      "solver": result.solver, "history": result.loss_history.tolist()})
        timer.advance(sum(g.count for g in groups))
    records = store.done_units(STAGE)
    if len(records) <= 3:
        for unit, record in records.items():
            where = f" for frames {layout.chunk_unit_first(unit)}.." if len(plan.shots) > 1 else ""
            progress.note(f"co-alignment ({record['solver']}){where}: objective {record['objective']:.6g} "
                          f"after {record['iterations']} iterations")
    else:
        progress.note(f"co-alignment ({solver}) of {len(records)} shots: "
                      f"{sum(r['iterations'] for r in records.values())} iterations in all")
    scales, shifts = [], []
    for g in plan.groups:
        for name, out in ((layout.coalign_scales, scales), (layout.coalign_shifts, shifts)):
            out.append(np.asarray(store.array(name(g.series))[g.offset:g.offset + g.count], dtype=np.float64))
    return scales, shifts

"""Co-alignment stage: solve on the stored pixel samples, commit scales, shifts and loss history.

Writes ``coalign/scales_g{k}`` and ``coalign/shifts_g{k}`` (float64 ``[N_k]``) and
``coalign/loss_history``; the unit record holds the objective and iterations. The solve is
one unit: a killed solve leaves no record, and its partial arrays are deleted and rewritten.
"""

from __future__ import annotations

import shutil

import numpy as np

from ...storage import layout
from ...storage.run_store import RunStore
from ..coalign import solve
from ..model import TORCH_DTYPES
from ..progress import Progress
from ..snippets import SnippetGroup

STAGE = layout.COALIGN


def coalign(store: RunStore, groups: list[SnippetGroup], global_min: float, solver: str, memory_budget: int,
            progress: Progress, exact_dtype: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-snippet (scales, shifts), from the store if already solved."""
    timer = progress.stage(STAGE, sum(g.count for g in groups), unit="snippets")
    if not store.is_done(STAGE, layout.SOLVE_UNIT):
        store.delete(layout.COALIGN_GROUP)  # debris of a killed solve: rewritten whole, then recorded
        samples = [store.array(layout.snippet_samples(k)) for k in range(len(groups))]
        spill = store.scratch_folder(STAGE)
        result = solve(samples, [g.dilation for g in groups], [g.length for g in groups],
                       groups[0].num_frames, global_min, solver=solver, memory_budget=memory_budget,
                       shift_dtype=TORCH_DTYPES[exact_dtype] if exact_dtype else None, spill_folder=spill)
        shutil.rmtree(spill, ignore_errors=True)
        for k in range(len(groups)):
            store.write_whole(layout.coalign_scales(k), result.scales[k], (f"snippet_g{k}",))
            store.write_whole(layout.coalign_shifts(k), result.shifts[k], (f"snippet_g{k}",))
        store.write_whole(layout.COALIGN_LOSS, np.asarray(result.loss_history, dtype=np.float64).reshape(-1),
                          ("iteration",))
        store.mark_done(STAGE, layout.SOLVE_UNIT, {"objective": float(result.objective),
                                                   "iterations": int(result.iterations), "solver": result.solver})
        timer.advance(timer.total)
    else:
        timer.advance(timer.total, reused=True)
    record = store.done_units(STAGE)[layout.SOLVE_UNIT]
    progress.note(f"co-alignment ({record['solver']}): objective {record['objective']:.6g} "
                  f"after {record['iterations']} iterations")
    scales = [np.asarray(store.array(layout.coalign_scales(k))[:]) for k in range(len(groups))]
    shifts = [np.asarray(store.array(layout.coalign_shifts(k))[:]) for k in range(len(groups))]
    return scales, shifts

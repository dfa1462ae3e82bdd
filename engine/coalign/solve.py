"""Co-alignment of RollingDepth snippets: one scale and shift per snippet (SPEC.md).

- ``reference``: the published rule, Adam (lr 1e-3, betas 0.5/0.9) for 2000 steps on the
  gradient with targets and normalizers held constant, float32 (``reference.py``).
- ``fast`` (default): least-squares start, then preconditioned L-BFGS (``fast.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ...storage.array_reads import value_range
from . import fast, reference
from .graph import SnippetGraph
from .objective import evaluate
from .observations import Observations
from .sampling import frames_from_shapes, sample_pixels

SOLVERS = ("fast", "reference")


@dataclass
class AlignResult:
    """Co-alignment parameters: a full-resolution map ``x`` of snippet ``k`` of group ``g``
    maps to ``scales[g][k] * (x - global_min) + shifts[g][k]``.

    ``scales``/``shifts``: float64 ``[N_g]`` per group; ``objective``: SPEC objective at
    these parameters; ``iterations``: optimizer steps; ``loss_history``: objective per step
    (``fast``: on its coarse pixel subset first, then on all pixels).
    """

    scales: list[np.ndarray]
    shifts: list[np.ndarray]
    global_min: float
    objective: float
    iterations: int
    loss_history: np.ndarray
    solver: str


def solve(samples: Sequence, dilations: Sequence[int], lengths: Sequence[int], num_frames: int, global_min: float,
          solver: str = "fast", memory_budget: int = 1 << 30, w_d: float = 1.0, max_iter: int | None = None,
          rtol: float = 1e-4, threads: int = 1, shift_dtype: torch.dtype | None = None,
          spill_folder=None) -> AlignResult:
    """Co-align snippets from their sampled maps.

    ``samples``: one ``[N_g, L_g, P_h, P_w]`` array-like per group (numpy, zarr: anything
    sliceable along axis 0), ``sample_pixels``-strided, raw (not min-shifted);
    ``global_min``: minimum over all full-resolution snippet maps (subtracted here);
    ``memory_budget``: bytes; samples that do not fit are re-read in chunks every pass, and
    the fast solver's factor (a quarter of the budget) spills to ``spill_folder`` (default: a
    temporary folder).
    ``max_iter``: step cap (default: 2000 Adam steps for ``reference``, the published
    rule; 200 for ``fast``); ``rtol``: relative objective gain at which ``fast`` stops.
    ``threads``: torch and BLAS threads during the solve (restored after): the solvers
    issue many short operations, which extra threads slow down on a busy machine.
    ``shift_dtype``: the dtype of the min shift (the published code's compute dtype; default float32).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown co-alignment solver {solver!r}; choose from {SOLVERS}")
    graph = SnippetGraph(dilations, lengths, num_frames)
    obs = Observations(samples, graph, global_min, memory_budget, shift_dtype=shift_dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            if solver == "reference":
                theta, history = reference.adam(obs, w_d, reference.ADAM_STEPS if max_iter is None else max_iter)
                value, iterations = evaluate(obs, theta, w_d, None)[0], len(history)
            else:
                step = obs.pixels // fast.COARSE_PIXELS
                coarse = Observations(samples, graph, global_min, memory_budget, pixel_step=step,
                                      shift_dtype=shift_dtype) if step > 1 else None
                theta, value, history, iterations = fast.solve(
                    obs, coarse, w_d, fast.MAX_ITER if max_iter is None else max_iter, rtol, memory_budget // 4,
                    spill_folder)
    finally:
        torch.set_num_threads(previous)
    k = graph.num_snippets
    return AlignResult(scales=graph.split(theta[:k]), shifts=graph.split(theta[k:]), global_min=float(global_min),
                       objective=float(value), iterations=int(iterations), loss_history=np.asarray(history, np.float64),
                       solver=solver)


def align(snippets: Sequence, dilations: Sequence[int], solver: str = "fast", **kwargs) -> AlignResult:
    """Co-align full-resolution snippets ``[N_g, L_g, H, W]`` (one array per dilation).

    Computes the global minimum and the SPEC samples, then calls ``solve`` with
    ``kwargs``. Raises ``ValueError`` when the groups imply different video lengths.
    """
    num_frames = frames_from_shapes([x.shape for x in snippets], dilations)
    global_min = min(value_range(x)[0] for x in snippets)
    samples = [sample_pixels(x) for x in snippets]
    return solve(samples, dilations, [x.shape[1] for x in snippets], num_frames, global_min, solver=solver, **kwargs)

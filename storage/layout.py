"""The run store's layout: every name it holds on disk is defined here, once.

A run store is one Zarr v3 group (``OUTDIR/run.zarr``) holding
- group attributes ``manifest`` (what produced the run) and ``info`` (facts stages publish);
- the arrays below, chunked along time (axis 0);
- completion records ``_units/<stage>/<unit>.json``, one per finished work unit.

Stages read and write through these names; ``inspect`` and ``batch`` ask the store
(``RunStore``) rather than building paths themselves.
"""

from __future__ import annotations

STORE_NAME = "run.zarr"
RECORDS = "_units"

# ---------------------------------------------------------------- stages, in pipeline order

INGEST = "ingest"
SNIPPETS = "snippets"
COALIGN = "coalign"
MERGE = "merge"
NORMALIZE = "normalize"
REFINE_ENCODE = "refine-encode"
REFINE = "refine"
REFINE_DECODE = "refine-decode"
EXPORT = "export"
COMPLETE = "complete"  # one record, written last: the whole run and its outputs are done
STAGE_ORDER = (INGEST, SNIPPETS, COALIGN, MERGE, NORMALIZE, REFINE_ENCODE, REFINE, REFINE_DECODE, EXPORT, COMPLETE)

# ---------------------------------------------------------------- arrays

RGB_LATENTS = "rgb_latents"  # [T, 4, h, w] VAE latents of the frames
MERGED = "merged"  # [T, H, W] mean of the co-aligned observations, before [-1, 1]
ALIGNED = "aligned"  # [T, H, W] co-aligned depth in [-1, 1], input of refinement
DEPTH = "depth"  # [T, H, W] the run's result
COALIGN_GROUP = "coalign"  # holds the solution: scales, shifts and loss history
COALIGN_LOSS = "coalign/loss_history"


def snippet_depth(group: int) -> str:
    """``[N_g, L_g, H, W]`` depth of every snippet of dilation group ``group``."""
    return f"snippets/g{group}"


def snippet_samples(group: int) -> str:
    """``[N_g, L_g, P_h, P_w]`` the SPEC sample grid of ``snippet_depth(group)``."""
    return f"samples/g{group}"


def coalign_scales(group: int) -> str:
    return f"coalign/scales_g{group}"


def coalign_shifts(group: int) -> str:
    return f"coalign/shifts_g{group}"


def refine_latents(buffer: int) -> str:
    """``[T, 4, h, w]`` refinement latents: step ``i`` reads buffer ``i % 2``, writes ``(i + 1) % 2``."""
    return f"refine/latents_{buffer}"


def normalize_target(refine_steps: int) -> str:
    """Where the normalize stage writes: refinement input when it runs, else the result."""
    return ALIGNED if refine_steps else DEPTH


# ---------------------------------------------------------------- units

SOLVE_UNIT = "solve"  # the one co-alignment unit
COMPLETE_UNIT = "run"


def chunk_unit(first: int, prefix: str = "") -> str:
    """Unit of a time chunk starting at frame ``first`` (``prefix`` tells passes apart)."""
    return f"{prefix}c{first:07d}"


def chunk_unit_first(unit: str) -> int:
    """The first frame of a ``chunk_unit`` id (any prefix)."""
    return int(unit.rsplit("c", 1)[1])


def refine_unit(step: int, first: int) -> str:
    return chunk_unit(first, f"s{step:02d}")


def refine_unit_step(unit: str) -> int:
    return int(unit[1:3])


def batch_unit(index: int) -> str:
    """Unit of snippet batch ``index``."""
    return f"b{index:06d}"


def export_unit(fmt: str, key: str, part: str) -> str:
    """Unit of one output: ``part`` is a ``chunk_unit`` id, or ``done`` once it is complete."""
    return f"{fmt}-{key}-{part}"


def record_path(stage: str, unit: str) -> str:
    """Path of a completion record inside the store."""
    return f"{RECORDS}/{stage}/{unit}.json"


def time_unit_arrays(refine_steps: int) -> dict[str, tuple[str, ...]]:
    """Stages whose ``chunk_unit(first)`` wrote frames ``[first, first + chunk)`` of these arrays."""
    return {INGEST: (RGB_LATENTS,), MERGE: (MERGED,), NORMALIZE: (normalize_target(refine_steps),),
            REFINE_ENCODE: (refine_latents(0),), REFINE_DECODE: (DEPTH,)}

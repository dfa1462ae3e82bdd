"""The run store's layout: every name it holds on disk is defined here, once.

A run store is one Zarr v3 group (``OUTDIR/run.zarr``) holding
- group attributes ``manifest`` (what produced the run) and ``info`` (facts stages publish);
- the arrays below, sharded along their first axis: one shard file per work unit, so a
  store holds about ``frames / unit`` files per array, and every inner chunk carries a
  CRC32C checksum;
- completion records ``_units/<stage>/<unit>/zarr.json``, one per finished work unit (Zarr
  group nodes, the record in their attributes, so the store stays a valid Zarr hierarchy);
- the snippet scratch: ``snippets/b<first batch>/{depth,latent,samples}``, the arrays of one
  snippet unit (see ``engine/stages/scratch.py``), deleted once its shots are merged;
- beside it, ``.run.zarr.scratch-<stage>/``: spill files of a stage in progress (the
  co-alignment factor), removed after.

Intermediate arrays are released (deleted, and listed in ``info.released``; rows of them in
``info.released_rows``) once every stage that reads them is done; the final ``depth`` and the
small co-alignment arrays stay. Stages read and write through these names; ``inspect`` and
``batch`` ask the store (``RunStore``) rather than building paths themselves. The stages
themselves, their order and what each reads and writes are declared once, in the engine
(``engine/stages/table.py``).
"""

from __future__ import annotations

STORE_NAME = "run.zarr"
RECORDS = "_units"

# ---------------------------------------------------------------- stage names (their record folders)

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

# ---------------------------------------------------------------- arrays and their dimensions

RGB_LATENTS = "rgb_latents"  # [T, 4, h, w] VAE latents of the frames
DEPTH = "depth"  # [T, H, W] float32: the merge's mean, normalized in place, refined in place: the result
FRAME = "frame"  # [T] frame numbers (the input's own for image sequences): a coordinate of every frame axis
TIME = "time"  # [T] seconds from the input's first frame (its real time stamps for variable-rate video)
COALIGN_GROUP = "coalign"  # holds the solution: scales and shifts (row = snippet start frame)

FRAME_DIMS = ("frame", "y", "x")
LATENT_DIMS = ("frame", "channel", "latent_y", "latent_x")


SNIPPET_SCRATCH = "snippets"  # the folder of every snippet unit's arrays


def snippet_scratch(first_batch: int, kind: str) -> str:
    """The ``kind`` array (``depth``, ``latent`` or ``samples``) of the snippet unit starting at batch ``first_batch``."""
    return f"{SNIPPET_SCRATCH}/{batch_unit(first_batch)}/{kind}"


def coalign_scales(group: int) -> str:
    return f"coalign/scales_g{group}"


def coalign_shifts(group: int) -> str:
    return f"coalign/shifts_g{group}"


def refine_latents(buffer: int) -> str:
    """``[T, 4, h, w]`` refinement latents: step ``i`` reads buffer ``i % 2``, writes ``(i + 1) % 2``."""
    return f"refine/latents_{buffer}"


# ---------------------------------------------------------------- work units

SHARD_BYTES = 192 << 20  # at most this many uncompressed bytes in one unit's shard
UNIT_RANGE = (8, 128)  # rows per unit: a power of two in this range


def unit_rows(row_bytes: int) -> int:
    """Rows (frames, or snippet starts) per work unit: the largest power of two in
    ``UNIT_RANGE`` whose shard holds at most ``SHARD_BYTES`` (at least the smallest)."""
    rows = UNIT_RANGE[1]
    while rows > UNIT_RANGE[0] and rows * row_bytes > SHARD_BYTES:
        rows //= 2
    return rows


COMPLETE_UNIT = "run"
COMPACTED = "_all"  # the records of a finished stage, gathered into one node


def batch_unit(first: int) -> str:
    """Unit of the snippet batches starting at ``first`` (its record holds where it stops)."""
    return f"b{first:07d}"


def batch_unit_first(unit: str) -> int:
    return int(unit[1:])


def chunk_unit(first: int, prefix: str = "") -> str:
    """Unit of the rows starting at ``first`` (frames, or snippet starts); ``prefix`` tells passes apart."""
    return f"{prefix}c{first:07d}"


def chunk_unit_first(unit: str) -> int:
    """The first row of a ``chunk_unit`` id (any prefix)."""
    return int(unit.rsplit("c", 1)[1])


def refine_unit(step: int, first: int) -> str:
    return chunk_unit(first, f"s{step:02d}")


def refine_unit_step(unit: str) -> int:
    return int(unit[1:3])


def export_unit(fmt: str, key: str, part: str) -> str:
    """Unit of one output: ``part`` is a ``chunk_unit`` id, or ``done`` once it is complete."""
    return f"{fmt}-{key}-{part}"


def record_path(stage: str, unit: str) -> str:
    """Path of a completion record inside the store (a Zarr group node holding it in its attributes)."""
    return f"{RECORDS}/{stage}/{unit}/zarr.json"

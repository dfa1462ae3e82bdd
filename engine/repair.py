"""What to recompute when a stage reads damaged data (a chunk that fails its checksum).

The stage table (``stages.table``) says which stage writes each array. The units that wrote
the damaged rows lose their records, so the run computes them again; units that read the
damaged rows failed while reading and were never recorded. Arrays written in place by a
chain of stages (``depth``: merge, normalize, refinement) are redone from the chain's first
stage for the shots they hold, and every later stage of those shots with them (their
outputs are written again). Where a first stage's own inputs are gone (released, or
overwritten in place), the shot is redone from its snippets, and from ingest where its RGB
latents are released too: always correct, and rare.
"""

from __future__ import annotations

from ..storage import layout
from ..storage.run_store import DamagedData, RunStore
from .run_context import RunContext
from .shots.model import Shot
from .stages import table
from .stages.export import shot_unit


def start_over(store: RunStore) -> str:
    """Withdraw every record and array; the manifest stays, so the same command redoes the run."""
    for stage in store.stages():
        store.clear_stage(stage)
    for name in store.array_names():
        store.delete(name)
    store.drop_info(*store.info)
    return "the data it was made from is gone: the run starts over"


def family_of(name: str) -> str | None:
    """The table's family of array ``name``."""
    if name == layout.RGB_LATENTS:
        return table.RGB_LATENTS
    if name.startswith(layout.SNIPPET_SCRATCH + "/"):
        return table.SCRATCH
    if name.startswith(layout.COALIGN_GROUP + "/"):
        return table.SOLUTION
    if name == layout.DEPTH:
        return table.DEPTH
    if name in (layout.refine_latents(0), layout.refine_latents(1)):
        return table.REFINE_LATENTS
    return None


def units_covering(store: RunStore, stage: str, first: int, stop: int) -> list[str]:
    """Recorded chunk units of ``stage`` whose rows start before ``stop`` and reach ``first``."""
    starts = sorted(layout.chunk_unit_first(u) for u in store.done_units(stage))
    ends = starts[1:] + [float("inf")]
    return [layout.chunk_unit(a) for a, b in zip(starts, ends) if a < stop and b > first]


def released(store: RunStore, name: str, first: int, stop: int) -> bool:
    """Whether any row of ``name`` in ``[first, stop)`` was released."""
    return name in store.info.get("released", []) or any(a < stop and b > first for a, b in store.released_rows(name))


def redo_ingest(store: RunStore, first: int, stop: int) -> str:
    units = units_covering(store, layout.INGEST, first, stop)
    for unit in units:
        store.clear_unit(layout.INGEST, unit)
    store.drop_info("num_frames")  # ingest walks the input again, encoding only the withdrawn units
    return f"ingest units {', '.join(units) or 'none'}"


def withdraw_shot(ctx: RunContext, shot: Shot, from_stage: str) -> None:
    """Withdraw shot ``shot``'s records of ``from_stage`` and every later shot stage, its outputs'
    records, and the run's completion."""
    store, plan, stages = ctx.store, ctx.plan, table.shot_stages(ctx.cfg)
    names = [s.name for s in stages]
    for stage in stages[names.index(from_stage):]:
        for unit in stage.units(plan, shot):
            store.clear_unit(stage.name, unit)
    if ctx.exports is not None:
        store.clear_unit(layout.EXPORT, shot_unit(ctx.exports.key, shot))
    chunks = {layout.chunk_unit(a) for a, _ in plan.segments(shot)}
    for unit in store.done_units(layout.EXPORT):
        if unit.rsplit("-", 1)[-1] in chunks or unit.endswith("-done"):
            store.clear_unit(layout.EXPORT, unit)
    store.clear_unit(layout.COMPLETE, layout.COMPLETE_UNIT)


def redo_snippets(ctx: RunContext, shot: Shot) -> str:
    """Withdraw every snippet unit holding shot ``shot`` (and its RGB latents' ingest units if
    they were released), so the shot's snippets are computed again."""
    store = ctx.store
    said = []
    for first in ctx.stream.units_of_shot(shot.index):
        store.clear_unit(layout.SNIPPETS, layout.batch_unit(first))
        store.delete(f"{layout.SNIPPET_SCRATCH}/{layout.batch_unit(first)}")
        said.append(layout.batch_unit(first))
    withdraw_shot(ctx, shot, layout.COALIGN)
    text = f"shot {shot.index} from its snippets (units {', '.join(said) or 'none'})"
    if released(store, layout.RGB_LATENTS, shot.start, shot.stop):
        text += " and " + redo_ingest(store, shot.start, shot.stop)
    return text


def scratch_intact(ctx: RunContext, shot: Shot) -> bool:
    return all(ctx.store.has(layout.snippet_scratch(first, "samples")) for first in ctx.stream.units_of_shot(shot.index))


def repair(ctx: RunContext, damage: DamagedData) -> str:
    """Withdraw the records that vouch for the damaged rows; returns what will be recomputed."""
    store = ctx.store
    name, first, stop = damage.name, damage.first, damage.stop
    if damage.metadata:  # the whole array is lost: removed, and every unit that wrote it withdrawn
        store.delete(name)
    if name in (layout.FRAME, layout.TIME):
        store.delete(layout.FRAME)
        store.delete(layout.TIME)
        return "the frame and time coordinates are written again"
    family = family_of(name)
    if family == table.RGB_LATENTS:
        return redo_ingest(store, first, stop) + " are recomputed"
    if family is None or ctx.plan is None or ctx.stream is None:
        return start_over(store)
    shots = [s for s in ctx.plan.shots if s.start < stop and s.stop > first]
    said = []
    if family == table.SCRATCH:
        unit_first = int(name.split("/")[1][1:])
        store.clear_unit(layout.SNIPPETS, layout.batch_unit(unit_first))
        store.delete(f"{layout.SNIPPET_SCRATCH}/{layout.batch_unit(unit_first)}")
        for k in ctx.stream.unit_shots.get(unit_first, []):
            if released(store, layout.RGB_LATENTS, ctx.plan.shots[k].start, ctx.plan.shots[k].stop):
                said.append(redo_ingest(store, ctx.plan.shots[k].start, ctx.plan.shots[k].stop))
        return f"snippet unit {layout.batch_unit(unit_first)}{' and ' if said else ''}{', '.join(said)} recomputed"
    if family == table.SOLUTION:
        shots = ctx.plan.shots if damage.metadata else shots  # rows are snippet start frames: the shots holding them
    first_writer = table.writers(family, ctx.cfg)[0].name
    for shot in shots:
        refined = any(store.is_done(layout.REFINE_DECODE, u) for u in table.stage(layout.REFINE_DECODE).units(
            ctx.plan, shot)) if ctx.cfg.refine_steps else False
        inputs_gone = not scratch_intact(ctx, shot) if first_writer in (layout.COALIGN, layout.MERGE) else refined
        if inputs_gone:
            said.append(redo_snippets(ctx, shot))
        else:
            withdraw_shot(ctx, shot, first_writer)
            said.append(f"shot {shot.index} from {first_writer}")
    return f"recomputed: {'; '.join(said) or 'nothing'}"

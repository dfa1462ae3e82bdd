"""What to recompute when a stage reads damaged data (a chunk that fails its checksum).

The unit that wrote the damaged rows loses its record, so the stage runs it again; units
that read the damaged rows failed while reading them and were never recorded. Where that
unit's own inputs were already released (the run keeps only the final depth unless
``--keep-intermediates``), or were overwritten in place, the run starts over from ingest:
correct, and rare.
"""

from __future__ import annotations

from ..storage import layout
from ..storage.run_store import DamagedData, RunStore


def units_covering(store: RunStore, stage: str, first: int, stop: int) -> list[str]:
    """Recorded units of ``stage`` (chunk units) whose rows start before ``stop`` and reach ``first``."""
    starts = sorted(layout.chunk_unit_first(u) for u in store.done_units(stage))
    ends = starts[1:] + [float("inf")]
    return [layout.chunk_unit(a) for a, b in zip(starts, ends) if a < stop and b > first]


def start_over(store: RunStore) -> str:
    """Withdraw every record and array; the manifest stays, so the same command redoes the run."""
    for stage in store.stages():
        store.clear_stage(stage)
    for name in store.array_names():
        store.delete(name)
    store.drop_info(*store.info)
    return "the data it was made from is gone: the run starts over"


def repair(store: RunStore, damage: DamagedData) -> str:
    """Withdraw the records that vouch for the damaged rows; returns what will be recomputed."""
    released = set(store.info.get("released", []))
    name, first, stop = damage.name, damage.first, damage.stop
    if damage.metadata:  # the whole array is lost: removed, and every unit that wrote it withdrawn
        store.delete(name)
    if name in (layout.FRAME, layout.TIME):
        store.delete(layout.FRAME)
        store.delete(layout.TIME)
        return "the frame and time coordinates are written again"

    def redo(stage: str, needs: tuple[str, ...]) -> str:
        if released & set(needs):
            return start_over(store)
        units = units_covering(store, stage, first, stop)
        for unit in units:
            store.clear_unit(stage, unit)
        return f"{stage} units {', '.join(units) or 'none'} are recomputed"

    if name == layout.RGB_LATENTS:
        store.drop_info("num_frames")  # ingest walks the input again, encoding only the withdrawn units
        return redo(layout.INGEST, ())
    if name.startswith(("snippets/", "samples/")):
        return redo(layout.SNIPPETS, (layout.RGB_LATENTS,))
    if name.startswith(layout.COALIGN_GROUP):
        if released & {layout.snippet_samples(0)}:
            return start_over(store)
        store.clear_stage(layout.COALIGN)
        return "the co-alignment is solved again"
    if name == layout.DEPTH:
        if units_covering(store, layout.REFINE_DECODE, first, stop):
            return redo(layout.REFINE_DECODE, (layout.refine_latents(0), layout.refine_latents(1)))
        if layout.REFINE_DECODE in store.stages() or layout.snippet_scratch(0) in released:
            return start_over(store)  # the co-aligned depth was refined in place, or its inputs are gone
        redo(layout.NORMALIZE, ())  # normalized in place: the merge runs again first
        return redo(layout.MERGE, ())
    if name.startswith("refine/"):
        if layout.REFINE_DECODE in store.stages() or released & {layout.RGB_LATENTS}:
            return start_over(store)
        for stage in (layout.REFINE_ENCODE, layout.REFINE):
            store.clear_stage(stage)
        return "the refinement runs again"
    return start_over(store)

"""``rdengine inspect STORE``: what a run store holds, how far it got, and whether it is intact.

``describe(store)`` gives the report lines: config, input, per-stage progress (units done /
expected), arrays with their sizes on disk, the completion record. ``verify(store)``
decompresses every chunk of every array and checks the completion records against the
data (a recorded unit's chunks must exist and decode; a completed stage must have all its
expected units; a finished run's outputs must exist). It returns the problems found.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..storage import layout
from ..storage.lock import lock_path_for, pid_alive, read_holder
from ..storage.run_store import DamagedData, DamagedStore, RunStore, read_record
from .config import ExecutionOptions
from .errors import EngineError
from .facts import RunFacts

SHOTS_LISTED = 12


def open_for_inspect(path: str | Path) -> RunStore:
    """The run store at ``path`` (``OUTDIR`` or ``OUTDIR/run.zarr``), read-only."""
    p = Path(path)
    if not p.exists():
        raise EngineError(f"no such run store: {p}")
    if (p / layout.STORE_NAME / "zarr.json").exists():
        p = p / layout.STORE_NAME
    if not (p / "zarr.json").exists():
        raise EngineError(f"not a run store (no zarr.json): {p}")
    try:
        store = RunStore(p, mode="r")
    except DamagedStore as exc:
        raise EngineError(str(exc)) from None
    if not store.manifest:
        raise EngineError(f"{p} has no run manifest (not made by rdengine)")
    return store


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def store_plan(store: RunStore):
    """The run's plan rebuilt from what the store recorded (None before the plan was made)."""
    from .config import RunConfig
    from .latents import Geometry
    from .plan import make_plan

    facts = RunFacts.read(store)
    if facts.plan is None or facts.num_frames is None:
        return None
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in store.manifest.get("config", {}).items()
              if k in fields}
    cfg = RunConfig(**config)
    return cfg, make_plan(facts, cfg, ExecutionOptions(), facts.num_frames, Geometry(facts.frame_size, facts.geometry),
                          4, None, "cpu", store.path.parent)


def shot_states(store: RunStore, cfg, plan) -> list[str]:
    """Per shot: the last of its stages that is complete (``pending``: none yet)."""
    from .stages import table

    covered = np.zeros(len(plan.batches), dtype=bool)
    for unit, record in store.done_units(layout.SNIPPETS).items():
        covered[layout.batch_unit_first(unit):record["stop"]] = True
    exported = {u.rsplit("-", 1)[-1] for u in store.done_units(layout.EXPORT) if u.startswith("shot-")}
    states = []
    for shot in plan.shots:
        state = "pending"
        if plan.last_batch[shot.index] < 0 or covered[:plan.last_batch[shot.index] + 1].all():
            state = "snippets"
        elif covered.any():
            state = "in snippets"
        for stage in table.shot_stages(cfg):
            if stage.name == layout.EXPORT:
                done = layout.chunk_unit(shot.start) in exported
            else:
                done = all(store.is_done(stage.name, unit) for unit in stage.units(plan, shot))
            if not done or state in ("pending", "in snippets"):
                break
            state = stage.name
        states.append(state)
    return states


def stage_progress(store: RunStore, cfg, plan) -> list[tuple[str, int, int | None, str]]:
    """``(stage, done, expected, what is counted)`` in table order."""
    from .stages import table

    facts = RunFacts.read(store)
    rows = []
    ingest = store.done_units(layout.INGEST)
    frames = sum(r.get("frames", 0) for r in ingest.values())
    rows.append((layout.INGEST, frames, facts.num_frames or facts.frames_announced, "frames"))
    if plan is None:
        return rows
    batches = sum(r["stop"] - layout.batch_unit_first(u) for u, r in store.done_units(layout.SNIPPETS).items())
    rows.append((layout.SNIPPETS, batches, len(plan.batches), "batches"))
    for stage in table.shot_stages(cfg):
        if stage.name == layout.EXPORT:
            done = sum(1 for u in store.done_units(layout.EXPORT) if u.startswith("shot-"))
            rows.append((stage.name, done, len(plan.shots), "shots"))
            continue
        expected = [u for shot in plan.shots for u in stage.units(plan, shot)]
        records = store.done_units(stage.name)
        rows.append((stage.name, sum(1 for u in expected if u in records), len(expected), "units"))
    return rows


def size_text(size) -> str:
    """``HxW`` of a recorded ``(height, width)``; ``?`` when the store does not say."""
    return f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else "?"


def describe(store: RunStore) -> list[str]:
    m, facts = store.manifest, RunFacts.read(store)
    cfg = m.get("config", {})
    lines = [f"run store   {store.path}",
             f"engine      {m.get('engine')}   checkpoint {facts.checkpoint_path} "
             f"({', '.join(f'{k} {str(v)[:16]}' for k, v in m.get('checkpoint', {}).items())})",
             f"input       {m.get('input', {}).get('name')} ({m.get('input', {}).get('kind')})   "
             f"identity {str(m.get('input', {}).get('identity'))[:16]}",
             "config      " + ", ".join(f"{k}={v}" for k, v in cfg.items()),
             f"config hash {m.get('config_hash')}"]
    if facts.num_frames is not None:
        frame, depth, latent = (size_text(size) for size in (facts.frame_size, facts.depth_size, facts.latent_size))
        lines.append(f"frames      {facts.num_frames} at {frame}, depth {depth} ({facts.geometry or '?'}), "
                     f"latents {latent}")
    if facts.plan is not None:
        kinds = {kind: facts.plan.scratch.count(kind) for kind in ("depth", "latent") if kind in facts.plan.scratch}
        lines.append(f"plan        batch {facts.plan.batch_size}, scratch "
                     f"{', '.join(f'{k} for {n} shot(s)' for k, n in kinds.items())} (budget "
                     f"{human(facts.plan.scratch_budget)})")
    for problem in (facts.decoding or {}).get("problems", []):
        lines.append(f"decoding    {problem}")
    for note in facts.notes:
        lines.append(f"note        {note}")
    holder = read_holder(lock_path_for(store.path))
    if holder:
        alive = pid_alive(int(holder.get("pid", -1)))
        lines.append(f"lock        process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
                     f" ({'running' if alive else 'not running: stale, taken over by the next run'})")
    rebuilt = store_plan(store)
    cfg_, plan = rebuilt if rebuilt else (None, None)
    lines.append("stages      done / expected")
    for stage, done, expected, what in stage_progress(store, cfg_, plan):
        if expected is None:
            lines.append(f"  {stage:<14} {done:>6} {what} so far (the input's length is known when ingest ends)")
            continue
        state = "complete" if done >= expected else "partial" if done else "pending"
        lines.append(f"  {stage:<14} {done:>6} / {expected:<6} {what:<8} {state}")
    if plan is not None:
        states = shot_states(store, cfg_, plan)
        counts = {state: states.count(state) for state in dict.fromkeys(states)}
        lines.append(f"shots       {len(plan.shots)}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        for shot, state in list(zip(plan.shots, states))[:SHOTS_LISTED]:
            lines.append(f"  shot {shot.index:<5} frames {shot.start}-{shot.stop - 1:<12} {plan.scratch[shot.index]} "
                         f"scratch   done through {state}")
        if len(plan.shots) > SHOTS_LISTED:
            lines.append(f"  ... {len(plan.shots) - SHOTS_LISTED} more shots")
    complete = store.done_units(layout.COMPLETE).get(layout.COMPLETE_UNIT)
    status = f"COMPLETE (finished {complete.get('finished', '?')})" if complete else "not complete"
    lines.append(f"status      {status}")
    lines.append("arrays")
    for name in store.array_names():
        try:
            arr = store.array(name)
        except DamagedData as damage:
            lines.append(f"  {name:<26} DAMAGED ({damage}): rerun the same process command to recompute it")
            continue
        lines.append(f"  {name:<26} {str(arr.shape):<22} {str(arr.dtype):<8} {arr.unit} rows/shard  "
                     f"{human(store.disk_bytes(name))}")
    if store.info.get("released"):
        lines.append(f"released    {', '.join(store.info['released'])}")
    lines.append(f"size        {human(store.disk_bytes())} on disk ({human(store.disk_bytes(allocated=False))} "
                 f"of data) in {store.file_count()} files")
    return lines


def check_array(store: RunStore, name: str, problems: list[str]) -> set[int] | None:
    """Decompress every stored shard of ``name`` (each inner chunk's CRC32C is checked);
    returns the first rows of the shards present (None: the array's metadata is unreadable)."""
    try:
        arr = store.array(name)
    except DamagedData as damage:
        problems.append(str(damage))
        return None
    present = set()
    unit = max(1, arr.unit)
    for first in range(0, max(arr.shape[0], 1) if arr.shape else 1, unit):
        if arr.shape and not store.shard_exists(name, first // unit):
            continue
        present.add(first)
        try:
            data = np.asarray(arr[first:first + unit] if arr.shape else arr[()])
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                problems.append(f"array {name} rows {first}..{first + len(data) - 1}: non-finite values")
        except DamagedData as damage:
            problems.append(str(damage))
    return present


def unit_rows(stage: str, unit: str, record: dict) -> tuple[list[str], int, int]:
    """The arrays and rows ``[first, stop)`` a recorded unit of ``stage`` vouches for."""
    if stage == layout.SNIPPETS:
        first = layout.batch_unit_first(unit)
        return [layout.snippet_scratch(first, kind) for kind in ("depth", "latent", "samples")], 0, 1
    if stage in (layout.INGEST, layout.MERGE, layout.NORMALIZE, layout.REFINE_DECODE, layout.REFINE_ENCODE,
                 layout.REFINE):
        first = layout.chunk_unit_first(unit)
        names = {layout.INGEST: [layout.RGB_LATENTS], layout.REFINE_ENCODE: [layout.refine_latents(0)]}.get(
            stage, [layout.DEPTH])
        if stage == layout.REFINE:
            names = [layout.refine_latents((layout.refine_unit_step(unit) + 1) % 2)]
        return names, first, first + 1
    return [], 0, 0


def verify(store: RunStore) -> list[str]:
    """Every problem found (empty when the store is intact)."""
    problems: list[str] = []
    present = {name: check_array(store, name, problems) for name in store.array_names()}
    released = set(store.info.get("released", []))
    merging_started = bool(store.done_units(layout.MERGE))
    for stage in store.stages():
        for unit, record in store.done_units(stage).items():
            names, first, _ = unit_rows(stage, unit, record)
            for name in names:
                if name in released or any(a <= first < b for a, b in store.released_rows(name)):
                    continue
                if stage == layout.SNIPPETS:
                    if name not in present and not name.endswith("/samples"):
                        continue  # a unit without snippets of that scratch kind
                    if name not in present and merging_started:
                        continue  # released once its shots were merged
                if name not in present:
                    problems.append(f"record {stage}/{unit}: array {name} is missing")
                    continue
                if present[name] is None:
                    continue  # unreadable metadata, said above
                arr = store.array(name)
                if first < arr.shape[0] and first - first % arr.unit not in present[name]:
                    problems.append(f"record {stage}/{unit}: array {name} rows from {first} are missing")
    if store.done_units(layout.COALIGN) and not any(name.startswith(layout.COALIGN_GROUP + "/") for name in present):
        problems.append("records of coalign: the scales arrays are missing")
    rebuilt = store_plan(store)
    if rebuilt is not None:
        cfg, plan = rebuilt
        complete = store.is_done(layout.COMPLETE, layout.COMPLETE_UNIT)
        for stage, done, expected, what in stage_progress(store, cfg, plan):
            if complete and expected is not None and done < expected:
                problems.append(f"run recorded complete but stage {stage} has {done} of {expected} {what}")
    if store.is_done(layout.COMPLETE, layout.COMPLETE_UNIT):
        record = store.done_units(layout.COMPLETE)[layout.COMPLETE_UNIT]
        for fmt, path in record.get("outputs", {}).items():
            if not Path(path).exists():
                problems.append(f"output {fmt} recorded complete but missing: {path}")
            elif fmt == "npy":
                try:
                    arr = np.load(path, mmap_mode="r")
                    if arr.shape[0] != record.get("frames"):
                        problems.append(f"output npy {path}: {arr.shape[0]} frames, expected {record.get('frames')}")
                except (OSError, ValueError) as exc:
                    problems.append(f"output npy {path}: unreadable ({exc})")
    for path in store.record_files():
        if read_record(path) is None:
            problems.append(f"record {path.relative_to(store.path)}: unreadable or fails its checksum")
    return problems

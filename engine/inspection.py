"""``rdengine inspect STORE``: what a run store holds, how far it got, and whether it is intact.

``describe(store)`` gives the report lines: config, input, per-stage progress (units done /
expected), arrays with their sizes on disk, the completion record. ``verify(store)``
decompresses every chunk of every array and checks the completion records against the
data (a recorded unit's chunks must exist and decode; a completed stage must have all its
expected units; a finished run's outputs must exist). It returns the problems found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..storage import layout
from ..storage.lock import lock_path_for, pid_alive, read_holder
from ..storage.run_store import DamagedData, DamagedStore, RunStore, read_record
from .errors import EngineError


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


def size_text(size) -> str:
    """``HxW`` of a recorded ``[height, width]``; ``?`` when the store does not say."""
    return f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else "?"


def stage_progress(store: RunStore) -> list[tuple[str, int, int | None]]:
    """``(stage, units done, units expected or None)`` in pipeline order."""
    expected = store.info.get("expected_units", {})
    present = set(store.stages()) | set(expected)
    ordered = [s for s in layout.STAGE_ORDER if s in present] + sorted(present - set(layout.STAGE_ORDER))
    return [(s, len(store.done_units(s)), expected.get(s)) for s in ordered]


def describe(store: RunStore) -> list[str]:
    m, info = store.manifest, store.info
    cfg = m.get("config", {})
    lines = [f"run store   {store.path}",
             f"engine      {m.get('engine')}   checkpoint {info.get('checkpoint_path')} "
             f"({', '.join(f'{k} {str(v)[:16]}' for k, v in m.get('checkpoint', {}).items())})",
             f"input       {m.get('input', {}).get('name')} ({m.get('input', {}).get('kind')})   "
             f"identity {str(m.get('input', {}).get('identity'))[:16]}",
             "config      " + ", ".join(f"{k}={v}" for k, v in cfg.items()),
             f"config hash {m.get('config_hash')}"]
    if "num_frames" in info:
        frame, depth, latent = (size_text(info.get(key)) for key in ("frame_size", "depth_size", "latent_size"))
        lines.append(f"frames      {info['num_frames']} at {frame}, depth {depth} ({info.get('geometry', '?')}), "
                     f"latents {latent}")
    if "plan" in info:
        plan = info["plan"] if isinstance(info["plan"], dict) else {}
        lines.append(f"plan        batch {plan.get('batch_size', '?')}, {plan.get('scratch', '?')} scratch, "
                     f"{plan.get('snippet_unit', '?')} snippet starts per unit")
    for problem in info.get("decoding", {}).get("problems", []):
        lines.append(f"decoding    {problem}")
    if "cuts" in info and "num_frames" in info:
        bounds = [0, *info["cuts"], info["num_frames"]]
        shown = ", ".join(f"{a}-{b - 1}" for a, b in zip(bounds[:-1], bounds[1:]))
        lines.append(f"shots       {len(bounds) - 1}: frames {shown[:300]}{' ...' if len(shown) > 300 else ''}")
    for note in info.get("notes", []):
        lines.append(f"note        {note}")
    holder = read_holder(lock_path_for(store.path))
    if holder:
        alive = pid_alive(int(holder.get("pid", -1)))
        lines.append(f"lock        process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
                     f" ({'running' if alive else 'not running: stale, taken over by the next run'})")
    lines.append("stages      units done / expected")
    for stage, done, expected in stage_progress(store):
        state = "" if expected is None else ("  complete" if done >= expected else "  partial" if done else "  pending")
        lines.append(f"  {stage:<14} {done:>5} / {'?' if expected is None else expected:<5}{state}")
    complete = store.done_units(layout.COMPLETE).get(layout.COMPLETE_UNIT)
    status = f"COMPLETE (finished {complete.get('finished', '?')})" if complete else "not complete"
    lines.append(f"status      {status}")
    lines.append("arrays")
    for name in store.array_names():
        try:
            arr = store.array(name)
        except DamagedData as damage:
            lines.append(f"  {name:<22} DAMAGED ({damage}): rerun the same process command to recompute it")
            continue
        lines.append(f"  {name:<22} {str(arr.shape):<22} {str(arr.dtype):<8} {arr.unit} rows/shard  "
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


def unit_arrays(stage: str, unit: str, names: set[str]) -> list[str]:
    """The arrays whose rows a recorded unit of ``stage`` vouches for (``names``: the arrays
    present or released, which tells how many snippet groups the run has)."""
    if stage == layout.INGEST:
        return [layout.RGB_LATENTS]
    if stage == layout.SNIPPETS:
        return sorted(n for n in names if n.startswith(("snippets/", "samples/")))
    if stage in (layout.MERGE, layout.NORMALIZE, layout.REFINE_DECODE):
        return [layout.DEPTH]
    if stage == layout.REFINE_ENCODE:
        return [layout.refine_latents(0)]
    if stage == layout.REFINE:
        return [layout.refine_latents((layout.refine_unit_step(unit) + 1) % 2)]
    return []


def verify(store: RunStore) -> list[str]:
    """Every problem found (empty when the store is intact)."""
    problems: list[str] = []
    present = {name: check_array(store, name, problems) for name in store.array_names()}
    released = set(store.info.get("released", []))
    for stage in store.stages():
        for unit in store.done_units(stage):
            for name in unit_arrays(stage, unit, set(present) | released):
                if name in released:
                    continue
                if name not in present:
                    problems.append(f"record {stage}/{unit}: array {name} is missing")
                    continue
                first = layout.chunk_unit_first(unit)
                if present[name] is None:
                    continue  # unreadable metadata, said above
                arr = store.array(name)
                if first < arr.shape[0] and first - first % arr.unit not in present[name]:
                    problems.append(f"record {stage}/{unit}: array {name} rows from {first} are missing")
    if store.done_units(layout.COALIGN) and layout.coalign_scales(0) not in present:
        problems.append("records of coalign: the scales arrays are missing")
    expected = store.info.get("expected_units", {})
    order = [s for s in layout.STAGE_ORDER if s in expected]
    reached = [s for s in order if store.done_units(s)]
    last = order.index(reached[-1]) if reached else -1
    for stage in order[:last]:  # a later stage has started: every earlier one must be whole
        done = len(store.done_units(stage))
        if done < expected[stage]:
            problems.append(f"stage {stage}: {done} of {expected[stage]} unit records present, "
                            f"but a later stage has started")
    if store.is_done(layout.COMPLETE, layout.COMPLETE_UNIT):
        for stage in order:
            if len(store.done_units(stage)) < expected[stage]:
                problems.append(f"run recorded complete but stage {stage} has "
                                f"{len(store.done_units(stage))} of {expected[stage]} units")
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

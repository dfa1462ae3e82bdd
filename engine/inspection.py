"""``rdengine inspect STORE``: what a run store holds, how far it got, and whether it is intact.

``describe(store)`` gives the report lines: config, input, per-stage progress (units done /
expected), arrays with their sizes on disk, the completion record. ``verify(store)``
decompresses every chunk of every array and checks the completion records against the
data (a recorded unit's chunks must exist and decode; a completed stage must have all its
expected units; a finished run's outputs must exist). It returns the problems found.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import zarr

from ..storage import layout
from ..storage.lock import lock_path_for, pid_alive, read_holder
from ..storage.run_store import RunStore
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
    except Exception as exc:  # unreadable group metadata
        raise EngineError(f"cannot open run store {p}: {exc}") from None
    if not store.manifest:
        raise EngineError(f"{p} has no run manifest (not made by rdengine)")
    return store


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


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
             f"engine      {m.get('engine')}   checkpoint {m.get('checkpoint')}",
             f"input       {m.get('input', {}).get('name')}   fingerprint {m.get('input', {}).get('fingerprint')}",
             "config      " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "checkpoint"),
             f"config hash {m.get('config_hash')}"]
    if "num_frames" in info:
        frame, depth, latent = info["frame_size"], info["depth_size"], info["latent_size"]
        lines.append(f"frames      {info['num_frames']} at {frame[0]}x{frame[1]}, depth {depth[0]}x{depth[1]} "
                     f"({info['geometry']}), latents {latent[0]}x{latent[1]}, batch {info.get('batch_size')}")
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
    lines.append(f"status      {'COMPLETE (finished ' + complete.get('finished', '?') + ')' if complete else 'not complete'}")
    lines.append("arrays")
    for name in store.array_names():
        arr = store.array(name)
        lines.append(f"  {name:<22} {str(arr.shape):<22} {str(arr.dtype):<8} chunks {arr.chunks}  "
                     f"{human(store.disk_bytes(name))}")
    lines.append(f"size        {human(store.disk_bytes())} on disk")
    return lines


def chunk_indices(arr: zarr.Array):
    grid = [-(-s // c) for s, c in zip(arr.shape, arr.chunks)]
    return itertools.product(*(range(g) for g in grid))


def check_array(store: RunStore, name: str, problems: list[str]) -> set[tuple[int, ...]]:
    """Decompress every stored chunk of ``name``; returns the indices of chunks present."""
    arr = store.array(name)
    present = set()
    for index in chunk_indices(arr):
        if not store.chunk_exists(name, index):
            continue
        present.add(index)
        sel = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, arr.chunks, arr.shape))
        try:
            data = np.asarray(arr[sel])
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                problems.append(f"array {name} chunk {index}: non-finite values")
        except Exception as exc:  # any decode failure is damage
            problems.append(f"array {name} chunk {index}: unreadable ({type(exc).__name__}: {exc})"[:300])
    return present


def verify(store: RunStore) -> list[str]:
    """Every problem found (empty when the store is intact)."""
    problems: list[str] = []
    present = {}
    for name in store.array_names():
        present[name] = check_array(store, name, problems)
    names = set(present)
    refine_steps = store.manifest.get("config", {}).get("refine_steps", 0)
    for stage, arrays in layout.time_unit_arrays(refine_steps).items():
        for unit in store.done_units(stage):
            first = layout.chunk_unit_first(unit)
            for name in arrays:
                if name not in names:
                    problems.append(f"record {stage}/{unit}: array {name} is missing")
                    continue
                arr = store.array(name)
                if first >= arr.shape[0]:
                    problems.append(f"record {stage}/{unit}: beyond array {name} of {arr.shape[0]} frames")
                    continue
                index = first // arr.chunks[0]
                missing = [i for i in chunk_indices(arr) if i[0] == index and i not in present[name]]
                if missing:
                    problems.append(f"record {stage}/{unit}: array {name} chunk {missing[0]} is missing")
    for unit in store.done_units(layout.REFINE):
        step, first = layout.refine_unit_step(unit), layout.chunk_unit_first(unit)
        name = layout.refine_latents((step + 1) % 2)
        arr = store.array(name) if name in names else None
        if arr is None or any(i not in present[name] for i in chunk_indices(arr)
                              if i[0] == first // arr.chunks[0]):
            problems.append(f"record refine/{unit}: data of {name} is missing")
    if store.is_done(layout.COALIGN, layout.SOLVE_UNIT) and layout.coalign_scales(0) not in names:
        problems.append("record coalign/solve: the scales arrays are missing")
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
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            problems.append(f"record {path.relative_to(store.path)}: unreadable")
    return problems

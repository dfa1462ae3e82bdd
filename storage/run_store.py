"""The run store: one Zarr v3 group per video run, plus completion records per work unit.

Layout under ``PATH`` (a directory):
- ``zarr.json`` with attrs ``manifest`` (what produced the run) and ``info`` (facts
  stages publish, e.g. frame count);
- one array per stage output, chunked along time, Blosc/Zstd compressed;
- ``_units/<stage>/<unit>.json``: written atomically *after* the unit's chunks, so a
  unit is done exactly when its record exists. Records may carry small results.

Storage knows nothing of diffusion: stages decide names, shapes and units.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import warnings
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
# Write every chunk, even one equal to the fill value: a recorded unit's chunks then always
# exist on disk, so ``inspect --verify`` can tell a missing chunk from an all-zero one.
zarr.config.set({"array.write_empty_chunks": True})


COMPLETE_STAGE, COMPLETE_UNIT = "complete", "run"  # the final record: the whole run and its outputs are done
COMPLETE_RECORD = f"_units/{COMPLETE_STAGE}/{COMPLETE_UNIT}.json"


class StoreMismatch(ValueError):
    """An existing store was made by a different configuration or input."""


class RunStore:
    """A Zarr group on disk with a manifest and per-unit completion records."""

    def __init__(self, path: str | Path, mode: str = "a"):
        self.path = Path(path)
        self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)

    @classmethod
    def create_or_resume(cls, path: str | Path, manifest: dict, overwrite: bool = False) -> "RunStore":
        """Open the store at ``path`` for ``manifest``: resume if it matches, start over if ``overwrite``.

        Crash-safe: a new store is built in a temporary folder and renamed into place with its
        manifest, and ``overwrite`` renames the old store away before deleting it, so a kill at
        any moment leaves either no store or a complete one (never records without a manifest).
        Raises StoreMismatch naming the manifest keys that differ.
        """
        path = Path(path)
        manifest = json.loads(json.dumps(manifest))  # as stored (tuples become lists), so a resume compares equal
        for leftover in path.parent.glob(f".{path.name}.*"):  # debris of a killed create/overwrite
            shutil.rmtree(leftover, ignore_errors=True)
        if overwrite and path.exists():
            trash = path.with_name(f".{path.name}.trash-{os.getpid()}")
            os.replace(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        if path.exists():
            if not (path / "zarr.json").exists():
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
                else:
                    raise StoreMismatch(f"{path} exists but is not a run store; use --overwrite to replace it")
            else:
                store = cls(path)
                old = store.manifest
                if not old:
                    raise StoreMismatch(f"run store {path} has no manifest (not made by rdengine?); "
                                        "use --overwrite to start over")
                if old != manifest:
                    raise StoreMismatch(f"run store {path} was made with a different "
                                        f"{describe_difference(old, manifest)}; use --overwrite to start over")
                return store
        tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        fresh = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        fresh.attrs["manifest"] = manifest
        os.replace(tmp, path)
        return cls(path)

    @property
    def manifest(self) -> dict:
        return dict(self.root.attrs.get("manifest", {}))

    @property
    def info(self) -> dict:
        return dict(self.root.attrs.get("info", {}))

    def update_info(self, **values) -> None:
        """Merge ``values`` into the store's ``info`` attributes."""
        self.root.attrs["info"] = {**self.info, **values}

    def has(self, name: str) -> bool:
        return name in self.root

    def array(self, name: str) -> zarr.Array:
        return self.root[name]

    def require(self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str = "float32") -> zarr.Array:
        """The array ``name``, created (zero-filled) if absent; an existing one must match."""
        if name in self.root:
            arr = self.root[name]
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise StoreMismatch(f"array {name} in {self.path} has shape {arr.shape} {arr.dtype}, "
                                    f"expected {tuple(shape)} {dtype}; use --overwrite to start over")
            return arr
        return self.root.create_array(name, shape=tuple(shape), chunks=tuple(max(1, c) for c in chunks),
                                      dtype=dtype, compressors=COMPRESSOR, fill_value=0)

    def delete(self, name: str) -> None:
        if name in self.root:
            del self.root[name]

    def _units_dir(self, stage: str) -> Path:
        return self.path / "_units" / stage

    def done_units(self, stage: str) -> dict[str, dict]:
        """Completion records of ``stage``: unit id -> the small result it recorded."""
        folder = self._units_dir(stage)
        if not folder.is_dir():
            return {}
        records = {}
        for p in sorted(folder.glob("*.json")):
            try:
                records[p.stem] = json.loads(p.read_text())
            except ValueError:  # unreadable record: the unit counts as not done (inspect --verify reports it)
                continue
        return records

    def is_done(self, stage: str, unit: str) -> bool:
        return (self._units_dir(stage) / f"{unit}.json").exists()

    def mark_done(self, stage: str, unit: str, record: dict | None = None) -> None:
        """Record ``unit`` of ``stage`` as done; call only after its data is written."""
        folder = self._units_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        _test_kill(folder, stage, "before")
        tmp = folder / f".{unit}.tmp"
        with tmp.open("w") as f:
            json.dump(record or {}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{unit}.json")
        _test_kill(folder, stage, "after")

    def clear_stage(self, stage: str) -> None:
        shutil.rmtree(self._units_dir(stage), ignore_errors=True)

    def clear_unit(self, stage: str, unit: str) -> None:
        """Withdraw a completion record (before its data is rewritten)."""
        (self._units_dir(stage) / f"{unit}.json").unlink(missing_ok=True)

    def stages(self) -> list[str]:
        """Names of the stages with completion records (``a/b`` for nested folders)."""
        root = self.path / "_units"
        if not root.is_dir():
            return []
        return sorted({str(p.parent.relative_to(root)) for p in root.rglob("*.json")})

    def array_names(self) -> list[str]:
        """Every array in the store, as ``a/b`` paths."""
        names: list[str] = []

        def walk(group, prefix: str) -> None:
            for key, member in group.members():
                if isinstance(member, zarr.Array):
                    names.append(prefix + key)
                else:
                    walk(member, prefix + key + "/")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ``_units`` is not a zarr node, by design
            walk(self.root, "")
        return sorted(names)

    def disk_bytes(self, sub: str = "") -> int:
        """Bytes on disk under the store (or under its member ``sub``)."""
        base = self.path / sub if sub else self.path
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file()) if base.exists() else 0


_KILL_AT = os.environ.get("RDENGINE_TEST_KILL_AT", "")


def _test_kill(folder: Path, stage: str, moment: str) -> None:
    """TEST ONLY (crash-safety tests): ``RDENGINE_TEST_KILL_AT=stage:N[:before]`` SIGKILLs this
    process when ``stage`` holds N records, right after the Nth is written (or, with
    ``:before``, after its data but before the record). Unset in normal use: a no-op."""
    if not _KILL_AT:
        return
    want_stage, count, *when = _KILL_AT.split(":")
    if want_stage == stage and (when[0] if when else "after") == moment:
        done = len(list(folder.glob("*.json"))) + (1 if moment == "before" else 0)
        if done >= int(count):
            os.kill(os.getpid(), signal.SIGKILL)


def describe_difference(old: dict, new: dict, prefix: str = "") -> str:
    """Name the (nested) keys whose values differ between two manifests."""
    keys = sorted(set(old) | set(new))
    diffs = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = describe_difference(a, b, f"{prefix}{key}.")
            if inner:
                diffs.append(inner)
        elif a != b:
            diffs.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return ", ".join(diffs)

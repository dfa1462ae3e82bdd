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
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


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

        Raises StoreMismatch naming the manifest keys that differ.
        """
        path = Path(path)
        if overwrite and path.exists():
            shutil.rmtree(path)
        if (path / "zarr.json").exists():
            store = cls(path)
            old = store.manifest
            if old and old != manifest:
                raise StoreMismatch(f"run store {path} was made with a different {describe_difference(old, manifest)}; "
                                    "use --overwrite to start over")
            if old:
                return store
        store = cls(path)
        store.root.attrs["manifest"] = manifest
        return store

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
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def is_done(self, stage: str, unit: str) -> bool:
        return (self._units_dir(stage) / f"{unit}.json").exists()

    def mark_done(self, stage: str, unit: str, record: dict | None = None) -> None:
        """Record ``unit`` of ``stage`` as done; call only after its data is written."""
        folder = self._units_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{unit}.tmp"
        with tmp.open("w") as f:
            json.dump(record or {}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{unit}.json")

    def clear_stage(self, stage: str) -> None:
        shutil.rmtree(self._units_dir(stage), ignore_errors=True)


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

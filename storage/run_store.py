"""The run store: one Zarr v3 group per video run, plus completion records per work unit.

What it holds is named in ``layout.py``. Arrays are chunked along time and Blosc/Zstd
compressed; a unit's record ``_units/<stage>/<unit>.json`` is written atomically *after*
the unit's chunks, so a unit is done exactly when its record exists. Records may carry
small results. Storage knows nothing of diffusion: stages decide shapes and units.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from . import layout

COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
# Write every chunk, even one equal to the fill value: a recorded unit's chunks then always
# exist on disk, so ``inspect --verify`` can tell a missing chunk from an all-zero one.
ARRAY_CONFIG = {"write_empty_chunks": True}


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
                                      dtype=dtype, compressors=COMPRESSOR, fill_value=0, config=ARRAY_CONFIG)

    def delete(self, name: str) -> None:
        if name in self.root:
            del self.root[name]

    def _units_dir(self, stage: str) -> Path:
        return self.path / layout.RECORDS / stage

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
        tmp = folder / f".{unit}.tmp"
        with tmp.open("w") as f:
            json.dump(record or {}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{unit}.json")

    def clear_unit(self, stage: str, unit: str) -> None:
        """Withdraw a completion record (before its data is rewritten)."""
        (self._units_dir(stage) / f"{unit}.json").unlink(missing_ok=True)

    def stages(self) -> list[str]:
        """Names of the stages with completion records (``a/b`` for nested folders)."""
        root = self.path / layout.RECORDS
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

    def chunk_exists(self, name: str, index: tuple[int, ...]) -> bool:
        """Whether chunk ``index`` of array ``name`` is stored."""
        return (self.path / name / self.array(name).metadata.encode_chunk_key(index)).exists()

    def record_files(self) -> list[Path]:
        """Every completion record file (for integrity checks)."""
        root = self.path / layout.RECORDS
        return sorted(root.rglob("*.json")) if root.is_dir() else []


@dataclass(frozen=True)
class RunSummary:
    """What a run store says about its run, read without opening it as a Zarr group."""

    manifest: dict
    info: dict
    complete: bool


def read_summary(store_location: str) -> RunSummary | None:
    """Manifest, info and completion of the run store at a local path or fsspec URL (None: no store)."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(store_location)
    root = root.rstrip("/")
    try:
        with fs.open(f"{root}/zarr.json", "rt") as f:
            attrs = json.load(f).get("attributes", {})
    except (FileNotFoundError, OSError, ValueError):
        return None
    try:
        complete = fs.exists(f"{root}/{layout.record_path(layout.COMPLETE, layout.COMPLETE_UNIT)}")
    except OSError:
        complete = False
    return RunSummary(manifest=attrs.get("manifest", {}), info=attrs.get("info", {}), complete=complete)


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

"""The run store: one Zarr v3 group per video run, plus completion records per work unit.

What it holds is named in ``layout.py``. Arrays are sharded along their first axis (one
shard per work unit, written whole), Blosc/Zstd compressed, and every inner chunk carries
a CRC32C: a damaged chunk raises ``DamagedData`` when read, never silently returns wrong
values. A unit's record ``_units/<stage>/<unit>.json`` (itself checksummed) is written
atomically *after* the unit's shards, so a unit is done exactly when its record exists.
Storage knows nothing of diffusion: stages decide shapes and units.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from . import layout
from .files import write_text_atomically

CODECS = [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec()]
# Smooth full-resolution maps (snippet depth scratch); chosen by `rdengine bench scratch-codecs`.
SMOOTH_MAP_CODECS = CODECS
# Write every chunk, even one equal to the fill value: a recorded unit's chunks then always
# exist on disk, so ``inspect --verify`` can tell a missing chunk from an all-zero one.
ARRAY_CONFIG = {"write_empty_chunks": True}


class StoreMismatch(ValueError):
    """An existing store was made by a different configuration or input."""


class DamagedStore(ValueError):
    """The store's metadata or records cannot be read (one-line message saying what to do)."""


class DamagedData(RuntimeError):
    """Rows ``[first, stop)`` of array ``name`` fail their checksum (or cannot be decoded);
    ``metadata``: the array's own metadata is unreadable (every row is lost)."""

    def __init__(self, name: str, first: int, stop: int, reason: str, metadata: bool = False):
        where = "metadata" if metadata else f"rows {first}..{stop - 1}"
        super().__init__(f"array {name} {where}: {reason}")
        self.name, self.first, self.stop, self.metadata, self.reason = name, first, stop, metadata, reason

    def __reduce__(self):  # raised on a cluster worker, re-raised by the run's process
        return DamagedData, (self.name, self.first, self.stop, self.reason, self.metadata)


ALL_ROWS = 2 ** 62


class ShardLocks:
    """One lock per (array, shard) of this process: writes of part of a shard (a read, merge and
    rewrite of the whole shard file) never interleave. A process whose writers share shards
    with other processes (a cluster's workers) installs locks those processes share."""

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, int], threading.Lock] = {}

    def lock(self, name: str, shard: int):
        with self._guard:
            return self._locks.setdefault((name, shard), threading.Lock())


class CheckedArray:
    """A Zarr array whose reads raise ``DamagedData`` instead of returning damaged chunks, or
    fill values for a shard whose file is missing (a lost or partly copied store)."""

    def __init__(self, name: str, array: zarr.Array, locks: ShardLocks | None = None):
        self.name, self.zarr, self.locks = name, array, locks

    @property
    def shape(self) -> tuple[int, ...]:
        return self.zarr.shape

    @property
    def dtype(self) -> np.dtype:
        return self.zarr.dtype

    @property
    def ndim(self) -> int:
        return self.zarr.ndim

    @property
    def unit(self) -> int:
        """Rows per shard (= per work unit) along axis 0."""
        return (self.zarr.shards or self.zarr.chunks)[0]

    def __getitem__(self, selection):
        first, stop = self._rows(selection)
        self._check_shards(first, stop)
        try:
            return self.zarr[selection]
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:  # checksum, codec or index damage
            raise DamagedData(self.name, first, stop, str(exc).splitlines()[0][:120]) from None

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The rows at ``indices`` (any order, repeats allowed), reading only their chunks."""
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        unique, inverse = np.unique(indices, return_inverse=True)
        unit = self.unit
        for shard in np.unique(unique // unit):
            self._check_shards(int(shard) * unit, int(shard) * unit + 1)
        try:
            values = self.zarr.get_orthogonal_selection((unique,) + (slice(None),) * (len(self.shape) - 1))
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            raise DamagedData(self.name, int(unique[0]), int(unique[-1]) + 1,
                              str(exc).splitlines()[0][:120]) from None
        return values[inverse]

    def _rows(self, selection) -> tuple[int, int]:
        """Rows ``[first, stop)`` along axis 0 that ``selection`` reads (0-dim arrays: ``(0, 1)``)."""
        length = self.shape[0] if self.shape else 1
        rows = selection[0] if isinstance(selection, tuple) and selection else selection
        if isinstance(rows, slice):
            first, stop, _ = rows.indices(length)
            return first, max(first, stop)
        if rows is Ellipsis or (isinstance(rows, tuple) and not rows):
            return 0, length
        index = np.asarray(rows)
        if index.dtype == bool or not index.size:
            return 0, length if index.dtype == bool else 0
        index = np.where(index < 0, index + length, index)
        return int(index.min()), int(index.max()) + 1

    def shard_file(self, shard: int) -> Path | None:
        """The file of shard ``shard`` (rows ``[shard * unit, (shard + 1) * unit)``; the only chunk of
        a 0-dim array); None when the array does not live in a local folder."""
        root = getattr(self.zarr.store, "root", None)
        if root is None:
            return None
        key = self.zarr.metadata.encode_chunk_key((shard,) + (0,) * (self.zarr.ndim - 1) if self.zarr.ndim else ())
        return Path(root) / self.zarr.path / key

    def _check_shards(self, first: int, stop: int) -> None:
        """Every shard holding rows ``[first, stop)`` must have its file (one stat per shard; an
        array is written whole shards at a time, each before the record vouching for it)."""
        unit = self.unit if self.shape else 1
        if stop <= first or not unit:
            return
        missing = [s for s in range(first // unit, -(-stop // unit))
                   if (path := self.shard_file(s)) is not None and not path.exists()]
        if missing:
            rows = self.shape[0] if self.shape else 1
            raise DamagedData(self.name, missing[0] * unit, min((missing[-1] + 1) * unit, rows),
                              f"shard file {self.shard_file(missing[0])} is missing")

    def write(self, first: int, data: np.ndarray) -> None:
        """Rows ``[first, first + len(data))``; a shard written in part is locked while it is rewritten."""
        stop = first + len(data)
        unit = self.unit
        partial = first % unit or (stop % unit and stop != self.shape[0])
        with self._shards_locked(first, stop) if partial and self.locks else ExitStack():
            self.zarr[first:stop] = data

    @contextmanager
    def _shards_locked(self, first: int, stop: int) -> Iterator[None]:
        with ExitStack() as held:
            for shard in range(first // self.unit, -(-stop // self.unit)):
                held.enter_context(self.locks.lock(self.name, shard))
            yield

    def __setitem__(self, selection, data) -> None:
        self.zarr[selection] = data


class RunStore:
    """A Zarr group on disk with a manifest, published facts (``info``) and completion records."""

    def __init__(self, path: str | Path, mode: str = "a", locks: ShardLocks | None = None):
        self.path = Path(path)
        self.locks = locks or ShardLocks()
        self._attrs_lock = threading.RLock()  # attributes are read, changed and written whole
        self._records_lock = threading.RLock()  # a stage's gathered records likewise
        self._compacted_cache: dict[str, tuple] = {}
        try:
            self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
            self.root.attrs.asdict()
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise DamagedStore(f"damaged store: cannot read the metadata of {self.path} ({str(exc)[:100]}); "
                               "rerun with --overwrite to start over") from None

    @classmethod
    def create_or_resume(cls, path: str | Path, manifest: dict, overwrite: bool = False,
                         replace_unstarted: bool = True) -> "RunStore":
        """Open the store at ``path`` for ``manifest``: resume if it matches, start over if ``overwrite``.

        Crash-safe: a new store is built in a temporary folder and renamed into place with its
        manifest, and ``overwrite`` renames the old store away before deleting it, so a kill at
        any moment leaves either no store or a complete one (never records without a manifest).
        A store that holds no finished unit is no run to protect: with ``replace_unstarted``
        it is replaced like ``overwrite``. Raises StoreMismatch naming the keys that differ.
        """
        path = Path(path)
        manifest = json.loads(json.dumps(manifest))  # as stored (tuples become lists), so a resume compares equal
        for leftover in path.parent.glob(f".{path.name}.*"):  # debris of a killed create/overwrite
            shutil.rmtree(leftover, ignore_errors=True)
        if path.exists() and not overwrite:
            if not (path / "zarr.json").exists():
                if not (path.is_dir() and not any(path.iterdir())):
                    raise StoreMismatch(f"{path} exists but is not a run store; use --overwrite to replace it")
                overwrite = True
            else:
                store = cls(path)
                old = store.manifest
                if old == manifest:
                    return store
                if not (replace_unstarted and not store.stages()):
                    if not old:
                        raise StoreMismatch(f"run store {path} has no manifest (not made by rdengine?); "
                                            "use --overwrite to start over")
                    raise StoreMismatch(f"run store {path} was made with a different "
                                        f"{describe_difference(old, manifest)}; use --overwrite to start over")
                overwrite = True
        if overwrite and path.exists():
            trash = path.with_name(f".{path.name}.trash-{os.getpid()}")
            os.replace(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
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
        with self._attrs_lock:
            self.root.attrs["info"] = {**self.info, **values}

    def drop_info(self, *keys: str) -> None:
        with self._attrs_lock:
            self.root.attrs["info"] = {k: v for k, v in self.info.items() if k not in keys}

    # ------------------------------------------------------------ arrays

    def has(self, name: str) -> bool:
        return (self.path / name / "zarr.json").is_file()

    def _open_array(self, name: str) -> zarr.Array:
        """The Zarr array ``name``; unreadable metadata, or no array at all (records may vouch
        for its rows), raises ``DamagedData`` for all its rows."""
        try:
            return self.root[name]
        except (ValueError, TypeError, KeyError, OSError) as exc:
            reason = str(exc).splitlines()[0][:100] if self.has(name) else f"the array is missing from {self.path}"
            raise DamagedData(name, 0, ALL_ROWS, reason, metadata=True) from None

    def array(self, name: str) -> CheckedArray:
        return CheckedArray(name, self._open_array(name), self.locks)

    def require(self, name: str, shape: tuple[int, ...], dtype: str, dims: tuple[str, ...], unit: int,
                inner: tuple[int, ...] | None = None, attrs: dict | None = None,
                codecs: list | None = None) -> CheckedArray:
        """The array ``name``, created (zero-filled) if absent; an existing one must match.

        ``unit``: rows per shard along axis 0; ``inner``: the inner chunk (default: one row,
        full extent on the other axes); ``dims``: dimension names (xarray opens the store);
        ``codecs``: the compressors (default ``CODECS``).
        """
        shape = tuple(int(s) for s in shape)
        if self.has(name):
            arr = self._open_array(name)
            if arr.shape != shape or arr.dtype != np.dtype(dtype):
                raise StoreMismatch(f"array {name} in {self.path} has shape {arr.shape} {arr.dtype}, "
                                    f"expected {shape} {dtype}; use --overwrite to start over")
            return CheckedArray(name, arr, self.locks)
        inner = inner or (1, *shape[1:])
        shards = (max(unit, inner[0]), *inner[1:]) if len(shape) else None
        arr = self.root.create_array(name, shape=shape, chunks=inner, shards=shards, dtype=dtype,
                                     compressors=codecs or CODECS, fill_value=0, config=ARRAY_CONFIG,
                                     dimension_names=dims, attributes=attrs or {})
        return CheckedArray(name, arr, self.locks)

    def write_whole(self, name: str, values: np.ndarray, dims: tuple[str, ...], attrs: dict | None = None) -> None:
        """A small array written at once (replaced if present): one chunk, one file."""
        self.delete(name)
        self.root.create_array(name, data=np.asarray(values), chunks=values.shape, compressors=CODECS,
                               config=ARRAY_CONFIG, dimension_names=dims, attributes=attrs or {})

    def set_attrs(self, name: str, **values) -> None:
        self._open_array(name).attrs.update(values)

    def delete(self, name: str) -> None:
        """Remove array ``name`` (its folder: also when its metadata is damaged)."""
        shutil.rmtree(self.path / name, ignore_errors=True)

    def release(self, *names: str) -> None:
        """Delete intermediate arrays whose consumers are done; ``info.released`` lists them."""
        present = [name for name in names if (self.path / name).exists()]
        for name in present:
            self.delete(name)
        if present:
            with self._attrs_lock:
                self.update_info(released=sorted(set(self.info.get("released", [])) | set(present)))

    def release_rows(self, name: str, first: int, stop: int) -> None:
        """Delete the shards of ``name`` whose rows all lie in ``[first, stop)`` (rows no reader needs
        any more); ``info.released_rows[name]`` lists the released row ranges."""
        if not self.has(name):
            return
        arr = self._open_array(name)
        unit = (arr.shards or arr.chunks)[0]
        with self._attrs_lock:
            ranges = self.info.get("released_rows", {})
            ranges[name] = merged_ranges([*ranges.get(name, []), [first, stop]])
            self.update_info(released_rows=ranges)
        for a, b in ranges[name]:  # whole shards inside the released rows (a range may complete a shard)
            last = arr.shape[0] if b >= arr.shape[0] else b // unit * unit
            for shard in range(-(-a // unit), -(-last // unit)):
                key = arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))
                (self.path / name / key).unlink(missing_ok=True)

    def released_rows(self, name: str) -> list[list[int]]:
        """Row ranges ``[first, stop)`` of ``name`` released on purpose (see ``release_rows``)."""
        return self.info.get("released_rows", {}).get(name, [])

    def array_names(self) -> list[str]:
        """Every array in the store, as ``a/b`` paths, found by their metadata files (one that
        cannot be read is listed too: opening it raises ``DamagedData``)."""
        names: list[str] = []
        for meta in sorted(self.path.rglob("zarr.json")):
            parts = meta.parent.relative_to(self.path).parts
            if parts and parts[0] != layout.RECORDS and node_type(meta) != "group":
                names.append("/".join(parts))
        return names

    def disk_bytes(self, sub: str = "", allocated: bool = True) -> int:
        """Bytes under the store (or under its member ``sub``): allocated on disk, as ``du``
        counts them (whole file-system blocks), or with ``allocated=False`` the files' sizes."""
        base = self.path / sub if sub else self.path
        if not base.exists():
            return 0
        stats = (p.stat() for p in base.rglob("*") if p.is_file())
        return sum(s.st_blocks * 512 if allocated else s.st_size for s in stats)

    def shard_exists(self, name: str, shard: int) -> bool:
        """Whether shard ``shard`` (along axis 0) of array ``name`` is stored."""
        arr = self._open_array(name)
        return (self.path / name / arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))).exists()

    def file_count(self) -> int:
        return sum(1 for p in self.path.rglob("*") if p.is_file())

    def scratch_folder(self, name: str) -> Path:
        """A folder for a stage's spill files, beside the store (``.run.zarr.scratch-<name>``): the
        stage removes what it wrote, and a new run removes what a killed one left."""
        return self.path.with_name(f".{self.path.name}.scratch-{name}")

    # ------------------------------------------------------------ completion records

    def _units_dir(self, stage: str) -> Path:
        return self.path / layout.RECORDS / stage

    def _record_file(self, stage: str, unit: str) -> Path:
        return self.path / layout.record_path(stage, unit)

    def done_units(self, stage: str) -> dict[str, dict]:
        """Completion records of ``stage``: unit id -> the small result it recorded.

        A record that cannot be read or fails its checksum counts as not done (``verify``
        reports it), so its unit is recomputed.
        """
        folder = self._units_dir(stage)
        if not folder.is_dir():
            return {}
        records = dict(self._compacted(stage))
        for unit in sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != layout.COMPACTED):
            record = read_record(self._record_file(stage, unit))
            if record is not None:
                records[unit] = record
        return records

    def is_done(self, stage: str, unit: str) -> bool:
        return self.record(stage, unit) is not None

    def record(self, stage: str, unit: str) -> dict | None:
        """The record of one unit (None: not done), without reading the stage's other records."""
        single = read_record(self._record_file(stage, unit))
        return single if single is not None else self._compacted(stage).get(unit)

    def single_records(self, stage: str) -> int:
        """How many records of ``stage`` are not yet gathered by ``compact``."""
        folder = self._units_dir(stage)
        return sum(1 for p in folder.iterdir() if p.name != layout.COMPACTED) if folder.is_dir() else 0

    def _compacted(self, stage: str) -> dict[str, dict]:
        """The records ``compact`` gathered into one node (read once per change of the file)."""
        path = self._record_file(stage, layout.COMPACTED)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        key = (stage, stat.st_mtime_ns, stat.st_size)
        if self._compacted_cache.get(stage, (None,))[0] != key:
            record = read_record(path)
            self._compacted_cache[stage] = (key, record["units"] if record else {})
        return self._compacted_cache[stage][1]

    def compact(self, stage: str) -> None:
        """Gather the records of a finished stage into one node, so a long run keeps few files:
        the gathered node is written first, the single records removed after."""
        with self._records_lock:
            records = self.done_units(stage)
            folder = self._units_dir(stage)
            if not records or not any(p.is_dir() and p.name != layout.COMPACTED for p in folder.iterdir()):
                return
            target = self._record_file(stage, layout.COMPACTED)
            target.parent.mkdir(exist_ok=True)
            write_text_atomically(target, group_metadata(wrap_record({"units": records})))
            for unit in records:
                if unit != layout.COMPACTED:
                    shutil.rmtree(folder / unit, ignore_errors=True)

    def mark_done(self, stage: str, unit: str, record: dict | None = None) -> None:
        """Record ``unit`` of ``stage`` as done; call only after its data is written.

        Records are Zarr group nodes (``_units/<stage>/<unit>/zarr.json``, the record in its
        attributes), so tools that walk the store (xarray, zarr) see a valid hierarchy.
        """
        target = self._record_file(stage, unit)
        for folder in (target.parent.parent.parent, target.parent.parent):  # _units/ and _units/<stage>/
            if not (folder / "zarr.json").exists():
                folder.mkdir(parents=True, exist_ok=True)
                write_text_atomically(folder / "zarr.json", group_metadata({}), durable=False)
        target.parent.mkdir(exist_ok=True)
        write_text_atomically(target, group_metadata(wrap_record(record or {})))

    def clear_unit(self, stage: str, unit: str) -> None:
        """Withdraw a completion record (before its data is rewritten)."""
        target = self._record_file(stage, unit)
        target.unlink(missing_ok=True)
        shutil.rmtree(target.parent, ignore_errors=True)
        with self._records_lock:
            gathered = self._compacted(stage)
            if unit in gathered:
                rest = {u: r for u, r in gathered.items() if u != unit}
                write_text_atomically(self._record_file(stage, layout.COMPACTED),
                                      group_metadata(wrap_record({"units": rest})))

    def clear_stage(self, stage: str) -> None:
        """Withdraw every record of ``stage``."""
        shutil.rmtree(self._units_dir(stage), ignore_errors=True)

    def stages(self) -> list[str]:
        """Names of the stages with completion records."""
        root = self.path / layout.RECORDS
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*/zarr.json")))

    def withdraw_unreadable_records(self) -> list[str]:
        """Delete the record files that cannot be read or fail their checksum (they count as
        not done anyway: their units are recomputed); returns them."""
        damaged = [path for path in self.record_files() if read_record(path) is None]
        for path in damaged:
            path.unlink(missing_ok=True)
        return [str(path.relative_to(self.path)) for path in damaged]

    def check_metadata(self) -> None:
        """Open every array's metadata: the first unreadable one raises ``DamagedData``."""
        for name in self.array_names():
            self._open_array(name)

    def record_files(self) -> list[Path]:
        """Every completion record file (for integrity checks)."""
        root = self.path / layout.RECORDS
        return sorted(root.glob("*/*/zarr.json")) if root.is_dir() else []


def merged_ranges(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted ``[first, stop)`` ranges with overlapping and touching ones joined."""
    out: list[list[int]] = []
    for first, stop in sorted(ranges):
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([first, stop])
    return out


def node_type(meta: Path) -> str | None:
    """``node_type`` of a ``zarr.json`` (None: unreadable)."""
    try:
        return json.loads(meta.read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def group_metadata(attributes: dict) -> str:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes})


def wrap_record(record: dict) -> dict:
    return {"record": record, "crc32": zlib.crc32(json.dumps(record, sort_keys=True).encode())}


def decode_record(text: str) -> dict | None:
    """A record's content, or None if the text is not a record or fails its checksum."""
    try:
        wrapped = json.loads(text)["attributes"]
        record = wrapped["record"]
        return record if wrap_record(record)["crc32"] == wrapped["crc32"] else None
    except (ValueError, KeyError, TypeError):
        return None


def read_record(path: Path) -> dict | None:
    """The record in ``path``, or None if it is missing, unreadable or fails its checksum."""
    try:
        return decode_record(path.read_text())
    except OSError:
        return None


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
        with fs.open(f"{root}/{layout.record_path(layout.COMPLETE, layout.COMPLETE_UNIT)}", "rt") as f:
            complete = decode_record(f.read()) is not None
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

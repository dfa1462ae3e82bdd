"""What a run gives back in Python: ``DepthResult`` (the whole video) and ``ShotDepth`` (one shot).

Depth stays in the run store and is read when asked for (``DepthArray``), so a result of a
two-hour film costs no memory until frames are read. A run without an output folder lives
in a temporary folder that ``TemporaryFolders`` removes once no result, depth array or shot
refers to it any more (or at ``close()``, or when Python exits).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, EngineError
from .storage import layout

if TYPE_CHECKING:  # heavy modules, imported where used
    import xarray

    from .engine.options import RunOptions
    from .engine.pipeline import RunResult
    from .engine.shots.model import Shot
    from .storage.exporters.meaning import DepthMeaning
    from .storage.inputs import FrameSource


class TemporaryFolders:
    """Folders removed when this object is garbage (or at ``close()``, or at exit): a temporary
    output folder and the spool of an iterator's frames. Results and arrays hold it to keep them."""

    def __init__(self):
        self.folders: list[Path] = []
        self._temporary: Path | None = None
        self._finalizer = weakref.finalize(self, _remove, self.folders)

    def temporary(self) -> Path:
        """A temporary output folder (made on first use, the same one afterwards)."""
        if self._temporary is None:
            self._temporary = Path(tempfile.mkdtemp(prefix="rdengine-"))
            self.folders.append(self._temporary)
        return self._temporary

    def add(self, folder: Path | None) -> None:
        if folder is not None:
            self.folders.append(folder)

    def close(self) -> None:
        self._finalizer()


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


class DepthArray:
    """Lazy ``float32 [T, H, W]`` depth: frames ``[start, stop)`` of a run store's ``depth`` array.

    Indexing reads only the frames (and rows, columns) asked for: ``depth[10]`` is one
    ``[H, W]`` frame, ``depth[10:20, :100]`` ten frames' top rows; ``np.asarray(depth)`` reads
    all. Values are relative inverse depth (see ``DepthResult.meaning``).
    """

    def __init__(self, store: Path, start: int = 0, stop: int | None = None, keep: Any = None):
        from .storage.run_store import RunStore

        self._array = RunStore(store, mode="r").array(layout.DEPTH)
        total = self._array.shape[0]
        self.start, self.stop = start, total if stop is None else stop
        self._keep = keep  # what keeps the store's folder in existence

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.stop - self.start, *self._array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        frames, rest = key[0], key[1:]
        lazy_rest = all(isinstance(k, (int, np.integer, slice)) for k in rest) and len(rest) <= 2
        index = np.arange(self.start, self.stop)[frames]
        if index.ndim == 0:
            return self._read((int(index), *rest)) if lazy_rest else self._read(int(index))[rest]
        if index.size == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        step = int(index[1] - index[0]) if index.size > 1 else 1
        if step > 0 and np.array_equal(index, np.arange(index[0], index[-1] + 1, step)):
            rows = slice(int(index[0]), int(index[-1]) + 1, step)
        else:
            rows = index
        if lazy_rest:
            return self._read((rows, *rest))
        return self._read(rows)[(slice(None), *rest)]

    def _read(self, selection) -> np.ndarray:
        from .storage.run_store import DamagedData

        try:
            if isinstance(selection, tuple) and isinstance(selection[0], np.ndarray):
                return np.stack([self._array[(int(i), *selection[1:])] for i in selection[0]])
            if isinstance(selection, np.ndarray):
                return np.stack([self._array[int(i)] for i in selection])
            return self._array[selection]
        except DamagedData as damage:
            raise EngineError(f"damaged data in run store {self._array.zarr.store}: {damage}; rerun the same "
                              "command to recompute it") from None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self._read(slice(self.start, self.stop))
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"DepthArray({self.dtype} {list(self.shape)}, relative inverse depth read from the run store)"


@dataclass(frozen=True)
class ShotDepth:
    """One shot's final depth, as ``RollingDepth.stream`` yields it.

    ``shot``: its index and frames ``[start, stop)`` of the processed clip; ``depth``: lazy
    ``float32 [n, H, W]`` relative inverse depth of those frames; ``frame_numbers``: ``int64
    [n]``, each frame's number (an image sequence's own, else its index in the input).
    """

    shot: Shot
    depth: DepthArray
    frame_numbers: np.ndarray


class DepthResult:
    """The depth of one run, read from its run store ``OUT/run.zarr`` when asked for.

    ``depth``: lazy ``float32 [T, H, W]`` relative inverse depth (near = large; each shot
    normalized to [-1, 1]) at the processing size; index it to read frames, or
    ``np.asarray(result.depth)`` for all. ``frame_numbers``: ``int64 [T]``; ``fps``: frames per
    second; ``shots``: the shots (``Shot(index, start, stop)``); ``meaning``: what the values
    are and how to convert them; ``outputs``: the files the run wrote (format -> path);
    ``store``: the run store. ``save``, ``visualize`` and ``to_xarray`` read the store.

    A result of a run without an output folder keeps its temporary folder while it (or its
    ``depth``) is referenced; ``close()`` removes it at once.
    """

    def __init__(self, run: RunResult, source: FrameSource, options: RunOptions, folders: TemporaryFolders):
        self.run, self.source, self.options = run, source, options
        self.store: Path = Path(run.store)
        self.outputs: dict[str, Path] = dict(run.outputs)
        self.fps: float = run.export_settings.fps
        self.name: str = run.export_settings.name
        self._folders = folders
        self.depth = DepthArray(self.store, keep=folders)

    @cached_property
    def frame_numbers(self) -> np.ndarray:
        """``int64 [T]``: each frame's number (an image sequence's own, else its index in the input)."""
        from .storage.run_store import RunStore

        return np.asarray(RunStore(self.store, mode="r").array(layout.FRAME)[:])

    @cached_property
    def shots(self) -> list[Shot]:
        """The shots: ``Shot(index, start, stop)``, frames ``[start, stop)`` of ``depth``."""
        from .engine.shots.model import shots_from_cuts
        from .storage.run_store import RunStore

        return shots_from_cuts(RunStore(self.store, mode="r").info.get("cuts", []), len(self.depth))

    @cached_property
    def meaning(self) -> DepthMeaning:
        """What ``depth`` holds: relative inverse depth, its actual ``range`` (min, max), that it is
        affine-invariant (true inverse depth = a * value + b, a and b unknown) and not metric, and
        (``as_depth()``, ``to_inverse_rule()``) how relative depth is derived from it."""
        from .storage.array_reads import value_range
        from .storage.exporters.meaning import describe

        return describe(*value_range(self.depth._array), output="inverse")

    def to_xarray(self) -> xarray.DataArray:
        """The depth as a lazy (Dask-backed) ``xarray.DataArray`` with dims ``frame, y, x`` and
        coordinates ``frame`` (numbers) and ``time`` (seconds)."""
        import xarray

        return xarray.open_zarr(self.store, consolidated=False, zarr_format=3)[layout.DEPTH]

    def save(self, format: str, folder: str | Path, *, name: str | None = None, **options: Any) -> Path:
        """Write the depth as ``format`` (``npy``, ``npz``, ``exr``, ``png16``, ``gray16``, ``ply``,
        ``mp4``, ``sbs``) into ``folder``, named like the run's outputs (``name`` replaces the
        stem), with the sidecar ``NAME_depth.json``; returns the written file or folder.

        ``options``: the run's output options (``output``, ``colormap``, ``exr_dtype``,
        ``exr_compression``, ``ply_every``, ``ply_stride``, ``focal``, ``fov``, ``restore_res``,
        ``fps``, ``progress``), checked like ``rdengine process``'s; by default the run's own.
        ``sbs`` and ``ply`` read the input's frames again (in-memory frames must be unchanged).
        """
        from .engine.clip import select_clip
        from .engine.progress import Progress
        from .engine.stages.export import export_copy
        from .storage.run_store import RunStore

        if format == "zarr":
            raise ConfigError(f"the zarr output is the run store itself: {self.store}")
        options = self.options.replace(save=(format,), **options)
        opts = options.execution()
        settings = self.run.export_settings.redirected(Path(folder), name or self.name, opts)
        Path(folder).mkdir(parents=True, exist_ok=True)
        clip = select_clip(self.source.info, options.run_config())[0]  # the run's frames, for sbs and ply
        with Progress(opts.progress) as progress:
            written = export_copy(RunStore(self.store, mode="r"), settings, lambda: clip.views(self.source), progress)
        return written[format]

    def visualize(self, frames: int | slice | Any = slice(None), colormap: str | None = None) -> np.ndarray:
        """Colourized depth as RGB ``uint8``: ``[H, W, 3]`` for one frame index, ``[n, H, W, 3]`` for
        a slice or list of frames; ``colormap``: a matplotlib colormap (default: the run's). The
        range is the whole video's, as in the ``mp4`` output."""
        from .engine.options import option
        from .storage.exporters.colour_video import colour_table, colourize

        table = colour_table(option("colormap").parse(colormap or self.options["colormap"]))
        lo, hi = self.meaning.range
        return colourize(np.asarray(self.depth[frames]), lo, hi, table)

    def close(self) -> None:
        """Remove the temporary folder of a run without an output folder now (nothing else)."""
        self._folders.close()

    def __enter__(self) -> "DepthResult":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        t, h, w = self.depth.shape
        return (f"DepthResult({t} frames of {w}x{h} relative inverse depth, {len(self.shots)} shot(s), "
                f"{self.fps:g} fps, store {self.store})")

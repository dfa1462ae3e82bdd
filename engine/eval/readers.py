"""Read depth-like frame stacks (ground truth, predictions, masks) lazily, frame range by frame range.

Supported sources, all exposed as a :class:`DepthStack` of shape ``[T, H, W]``:

- ``.npy`` (memory-mapped) or ``.npz`` array, ``[T, H, W]`` or a single ``[H, W]`` frame;
  an ``.npz`` must hold one array or one named ``depth``;
- a single ``.png`` / ``.exr`` image (one frame);
- a folder of ``.png`` or ``.exr`` images, one frame per file, in natural name order
  (``2.png`` before ``10.png``);
- a run store: ``OUTDIR`` or ``OUTDIR/run.zarr`` (a Zarr v3 group holding an array ``depth``).

Integer data (16-bit PNG, integer arrays) is divided by ``depth_scale`` (e.g. 1000 for
millimetres); floating-point data (EXR, float arrays, run stores) is returned as stored.
Every problem with a user-supplied path raises :class:`EvalInputError` naming the file.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.errors
from PIL import Image

from ...errors import EvalInputError
from ...storage import layout
from ...storage.run_store import DamagedData, DamagedStore, RunStore, read_summary
_EXR_CHANNEL_PREFERENCE = ("z", "depth", "y", "r")


@dataclass(frozen=True)
class DepthStack:
    """A lazily read stack of ``T`` frames of ``H x W`` values.

    ``read(start, stop)`` returns float64 ``[stop - start, H, W]``, already divided by the depth
    scale when the source stores integers.
    """

    path: Path
    shape: tuple[int, int, int]
    _read: Callable[[int, int], np.ndarray]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as float64 ``[n, H, W]``."""
        return self._read(start, stop)


def open_depth(path: str | Path, *, depth_scale: float = 1.0) -> DepthStack:
    """Open a depth stack (see the module docstring for the formats); nothing large is read yet."""
    path = Path(path)
    if depth_scale <= 0:
        raise EvalInputError(f"{path}: depth scale must be positive, got {depth_scale}")
    if not path.exists():
        raise EvalInputError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "zarr.json").is_file() or (path / layout.STORE_NAME).is_dir():
            return _open_run_store(path)
        return _open_frame_folder(path, depth_scale)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _open_npy(path, depth_scale)
    if suffix == ".npz":
        return _open_npz(path, depth_scale)
    if suffix in _FRAME_READERS:
        return _frame_files_stack(path, [path], depth_scale)
    raise EvalInputError(f"{path}: unsupported format (expected .npy, .npz, .png, .exr, a folder or a run store)")


def _as_float(frames: np.ndarray, depth_scale: float) -> np.ndarray:
    """Integer/bool data divided by ``depth_scale``; float data unchanged; float64 out."""
    if np.issubdtype(frames.dtype, np.floating):
        return frames.astype(np.float64)
    return frames.astype(np.float64) / depth_scale


def _array_stack(path: Path, array: np.ndarray | zarr.Array, depth_scale: float) -> DepthStack:
    """Wrap a sliceable ``[T, H, W]`` or ``[H, W]`` array (numpy, memmap or zarr)."""
    if array.ndim not in (2, 3):
        raise EvalInputError(f"{path}: expected a [T, H, W] or [H, W] array, got shape {tuple(array.shape)}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise EvalInputError(f"{path}: expected numeric data, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.asarray(array)[None]
    shape = tuple(int(s) for s in array.shape)

    def read(start: int, stop: int) -> np.ndarray:
        return _as_float(np.asarray(array[start:stop]), depth_scale)

    return DepthStack(path, shape, read)


def _open_npy(path: Path, depth_scale: float) -> DepthStack:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EvalInputError(f"{path}: cannot read .npy ({exc})") from None
    return _array_stack(path, array, depth_scale)


def _open_npz(path: Path, depth_scale: float) -> DepthStack:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = dict(archive.items())
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise EvalInputError(f"{path}: cannot read .npz ({exc})") from None
    key = "depth" if "depth" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
    if key is None:
        raise EvalInputError(f"{path}: holds arrays {sorted(arrays)}; expected one array or one named 'depth'")
    return _array_stack(path, arrays[key], depth_scale)


def _open_run_store(path: Path) -> DepthStack:
    group_path = path / layout.STORE_NAME if (path / layout.STORE_NAME).is_dir() else path
    summary = read_summary(str(group_path))
    if summary and summary.manifest and not summary.complete:
        raise EvalInputError(f"{group_path}: the run is not complete (rerun `rdengine process` to finish it)")
    if summary and summary.manifest:
        return _checked_depth(group_path)
    try:
        group = zarr.open_group(str(group_path), mode="r")
        array = group[layout.DEPTH]
    except KeyError:
        raise EvalInputError(f"{group_path}: run store has no 'depth' array (run not finished?)") from None
    except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
        raise EvalInputError(f"{group_path}: cannot open run store ({exc})") from None
    if not isinstance(array, zarr.Array):
        raise EvalInputError(f"{group_path}: 'depth' is not an array")
    return _array_stack(group_path, array, 1.0)


def _checked_depth(group_path: Path) -> DepthStack:
    """The ``depth`` of an rdengine run store, read through its checks: a chunk that fails its
    checksum or a lost shard is an error naming the rows, never wrong or zero depth."""
    def damaged(exc: Exception) -> EvalInputError:
        return EvalInputError(f"{group_path}: damaged run store ({exc}); rerun the same `rdengine process` "
                              "command to recompute it")

    try:
        stack = _array_stack(group_path, RunStore(group_path, mode="r").array(layout.DEPTH), 1.0)
    except (DamagedStore, DamagedData) as exc:
        raise damaged(exc) from None

    def read(start: int, stop: int) -> np.ndarray:
        try:
            return stack.read(start, stop)
        except DamagedData as exc:
            raise damaged(exc) from None

    return DepthStack(group_path, stack.shape, read)


def _natural_key(path: Path) -> list:
    """Sort key comparing digit runs numerically: ``frame2`` < ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _open_frame_folder(path: Path, depth_scale: float) -> DepthStack:
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    by_kind = {suffix: [p for p in files if p.suffix.lower() == suffix] for suffix in _FRAME_READERS}
    kinds = [suffix for suffix, found in by_kind.items() if found]
    if len(kinds) != 1:
        what = "both .png and .exr files" if kinds else "no .png or .exr frames"
        raise EvalInputError(f"{path}: folder holds {what}; expected one frame format")
    return _frame_files_stack(path, sorted(by_kind[kinds[0]], key=_natural_key), depth_scale)


def _frame_files_stack(path: Path, files: list[Path], depth_scale: float) -> DepthStack:
    """A stack reading one image file per frame; the first file fixes ``H x W``."""
    read_frame = _FRAME_READERS[files[0].suffix.lower()]
    height, width = read_frame(files[0]).shape

    def read(start: int, stop: int) -> np.ndarray:
        frames = []
        for file in files[start:stop]:
            frame = read_frame(file)
            if frame.shape != (height, width):
                raise EvalInputError(f"{file}: frame is {frame.shape[0]}x{frame.shape[1]}, expected {height}x{width}")
            frames.append(_as_float(frame, depth_scale))
        return np.stack(frames) if frames else np.empty((0, height, width))

    return DepthStack(path, (len(files), height, width), read)


def _read_png(path: Path) -> np.ndarray:
    """One single-channel PNG (8/16-bit, or 1-bit) as its stored integer array ``[H, W]``."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except (OSError, ValueError) as exc:
        raise EvalInputError(f"{path}: cannot read PNG ({exc})") from None
    if array.ndim != 2:
        raise EvalInputError(f"{path}: expected a single-channel PNG, got mode {mode}")
    return array


def _read_exr(path: Path) -> np.ndarray:
    """The depth channel of one EXR image as float ``[H, W]``.

    A single channel is used as is; otherwise the first channel whose last name component is
    ``Z``, ``depth``, ``Y`` or ``R`` (case-insensitive), in that order of preference.
    """
    try:
        import OpenEXR
    except ImportError:
        raise EvalInputError(f"{path}: reading EXR needs the OpenEXR package >= 3.3 (pip install OpenEXR)") from None
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
    except (OSError, RuntimeError, ValueError) as exc:
        raise EvalInputError(f"{path}: cannot read EXR ({exc})") from None
    if len(channels) == 1:
        return next(iter(channels.values()))
    by_short_name = {name.rsplit(".", 1)[-1].lower(): name for name in sorted(channels)}
    for wanted in _EXR_CHANNEL_PREFERENCE:
        if wanted in by_short_name:
            return channels[by_short_name[wanted]]
    raise EvalInputError(f"{path}: no depth channel among {sorted(channels)} (expected Z, depth, Y or R)")


_FRAME_READERS: dict[str, Callable[[Path], np.ndarray]] = {".png": _read_png, ".exr": _read_exr}

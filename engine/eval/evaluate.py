"""Video depth accuracy with the paper's protocol: one affine fit per video in inverse depth.

Per video (all frames pooled):

1. The prediction ``pred`` ``[T, h, w]`` (relative inverse depth) is resized to the ground-truth
   size ``[T, H, W]`` (bilinear, pixel centres aligned, antialiased when shrinking).
2. Valid pixels: ground truth finite and inside ``(min_depth, max_depth)``, inside the border
   crop, and nonzero in every mask.
3. One least-squares scale ``a`` and shift ``b`` with ``a * pred + b ~= 1 / gt`` over the valid
   pixels of all frames, streamed over frame chunks (constant memory in ``T``).
4. Aligned depth ``d = 1 / clip(a * pred + b, 1 / max_depth, 1 / min_depth)``; without
   ``max_depth`` the upper clamp is the largest valid ground-truth depth of the video.
5. Over valid pixels of all frames: AbsRel = mean ``|d - d*| / d*``, delta_k = share of pixels
   with ``max(d / d*, d* / d) < 1.25**k``, RMSE in ground-truth units; the same per frame.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...storage import layout
from ...storage.run_store import read_summary
from ..errors import output_folder
from .readers import DepthStack, EvalInputError, open_depth
from .plots import plot_per_frame, plot_temporal_profile

__all__ = [
    "EvalInputError",
    "EvalOptions",
    "VideoMetrics",
    "align_to_depth",
    "evaluate_many",
    "evaluate_video",
    "format_shot_table",
    "format_summary_table",
    "mean_metrics",
    "pair_folders",
    "parse_crop",
    "read_pairs_csv",
    "report_text",
]

METRIC_NAMES = ("abs_rel", "delta1", "delta2", "delta3", "rmse")
_THRESHOLDS = (1.25, 1.25**2, 1.25**3)
_CHUNK_PIXELS = 1 << 22  # pixels per streamed frame chunk (32 MiB per float64 array)
_PROFILE_MAX_FRAMES = 2000  # longer videos: the temporal profile shows every k-th frame
_ASPECT_TOLERANCE = 0.05  # relative aspect-ratio mismatch tolerated between prediction and GT

PathLike = str | Path


@dataclass(frozen=True)
class EvalOptions:
    """Evaluation settings shared by all videos.

    depth_scale: integer ground truth (16-bit PNG, integer arrays) is divided by it (1000: mm -> m).
    min_depth, max_depth: valid ground-truth range (exclusive), in metres; ``None`` = no cap.
    crop: border pixels ignored at ``(top, bottom, left, right)`` of the ground-truth frame.
    mask_path: one or more masks (stack ``[T, H, W]`` or single frame ``[H, W]``), nonzero = valid.
    profile_column: image column of the temporal profile plot (ground-truth pixels; ``None`` = middle).
    per_shot: one affine fit per shot instead of per video (shots from the prediction's run
    store, or a ``*_shots.json`` beside a prediction file): for shot-aware runs, whose shots
    are each normalized on their own.
    """

    depth_scale: float = 1000.0
    min_depth: float = 1e-3
    max_depth: float | None = None
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    mask_path: PathLike | Sequence[PathLike] | None = None
    profile_column: int | None = None
    per_shot: bool = False

    def mask_paths(self) -> list[Path]:
        """``mask_path`` as a list of paths."""
        if self.mask_path is None:
            return []
        if isinstance(self.mask_path, (str, Path)):
            return [Path(self.mask_path)]
        return [Path(p) for p in self.mask_path]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {**asdict(self), "crop": list(self.crop), "mask_path": [str(p) for p in self.mask_paths()]}


@dataclass(frozen=True)
class VideoMetrics:
    """Accuracy of one video. Ratios are fractions in [0, 1]; ``rmse`` is in ground-truth units (m).

    ``scale``/``shift`` are the fitted ``a``/``b`` of ``a * pred + b ~= 1 / gt`` (of the first
    shot with ``per_shot``); ``fits`` holds ``(start, stop, scale, shift)`` of every fitted frame
    range and ``fit_metrics`` its ``n_valid`` and metrics (pooled over its frames);
    ``depth_range`` is the clamp applied to aligned depth. ``per_frame`` maps ``"n_valid"``
    and each metric name to a ``[T]`` array (NaN for frames without valid pixels).
    """

    name: str
    pred_path: str
    gt_path: str
    n_frames: int
    n_valid: int
    scale: float
    shift: float
    depth_range: tuple[float, float]
    abs_rel: float
    delta1: float
    delta2: float
    delta3: float
    rmse: float
    per_frame: dict[str, np.ndarray] = field(repr=False, compare=False)
    fits: tuple[tuple[int, int, float, float], ...] = ()
    fit_metrics: tuple[dict[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Scalar fields (no per-frame arrays), JSON-ready; ``fits``: each fitted frame range with
        its scale, shift, valid pixels and metrics."""
        out = {k: v for k, v in asdict(self).items() if k not in ("per_frame", "fit_metrics")}
        out["depth_range"] = list(self.depth_range)
        out["fits"] = [dict(zip(("start", "stop", "scale", "shift"), fit)) | values
                       for fit, values in zip(self.fits, self.fit_metrics or [{}] * len(self.fits))]
        return out


@dataclass(frozen=True)
class _Video:
    """Opened, mutually consistent inputs of one video."""

    name: str
    pred: DepthStack
    gt: DepthStack
    masks: tuple[DepthStack, ...]
    column: int
    segments: tuple[tuple[int, int], ...]  # frame ranges fitted each on its own


@dataclass
class _LinearFit:
    """Streaming least squares ``y ~= a * x + b`` (chunk statistics merged with Chan's update)."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add 1-D samples ``x``, ``y`` (float64)."""
        m = x.size
        if m == 0:
            return
        mx, my = float(x.mean()), float(y.mean())
        dx, dy = mx - self.mean_x, my - self.mean_y
        weight = self.n * m / (self.n + m)
        self.sxx += float(np.dot(x - mx, x - mx)) + dx * dx * weight
        self.sxy += float(np.dot(x - mx, y - my)) + dx * dy * weight
        self.n += m
        self.mean_x += dx * m / self.n
        self.mean_y += dy * m / self.n

    def solve(self) -> tuple[float, float]:
        """``(a, b)``; a constant ``x`` gives ``a = 0`` and ``b`` = mean of ``y``."""
        a = self.sxy / self.sxx if self.sxx > 0 else 0.0
        return a, self.mean_y - a * self.mean_x


def align_to_depth(pred: np.ndarray, scale: float, shift: float, *, min_depth: float, max_depth: float) -> np.ndarray:
    """Metric depth ``1 / clip(scale * pred + shift, 1 / max_depth, 1 / min_depth)``, same shape as ``pred``."""
    return 1.0 / np.clip(scale * pred + shift, 1.0 / max_depth, 1.0 / min_depth)


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"top,bottom,left,right"`` (pixels) -> tuple; e.g. ``"45,9,41,39"`` is the Eigen crop at 480x640."""
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise EvalInputError(f"crop {text!r}: expected four non-negative integers top,bottom,left,right")
    top, bottom, left, right = (int(p) for p in parts)
    return top, bottom, left, right


def evaluate_video(
    pred_path: PathLike,
    gt_path: PathLike,
    *,
    out_dir: PathLike | None = None,
    name: str | None = None,
    **options: Any,
) -> VideoMetrics:
    """Evaluate one prediction (run store or ``[T, h, w]`` stack) against ground truth ``[T, H, W]``.

    ``options`` are the fields of :class:`EvalOptions`. With ``out_dir``, writes ``metrics.json``,
    ``per_frame.csv``, ``per_frame.png`` and ``profile.png`` there.
    """
    opts = EvalOptions(**options)
    video = _open_video(name or _default_name(Path(pred_path)), pred_path, gt_path, opts)
    return _evaluate(video, opts, None if out_dir is None else output_folder(Path(out_dir)))


def evaluate_many(
    pairs: Sequence[tuple[str, PathLike, PathLike]],
    out_dir: PathLike | None = None,
    **options: Any,
) -> list[VideoMetrics]:
    """Evaluate ``(name, pred, gt)`` pairs with shared :class:`EvalOptions`.

    All inputs are opened and checked before any video is scored. With ``out_dir``, each video's
    files go to ``out_dir/<name>/`` and ``summary.csv``, ``summary.json`` and ``summary.txt`` (the
    :func:`format_summary_table` text) to ``out_dir``.
    """
    opts = EvalOptions(**options)
    if not pairs:
        raise EvalInputError("no videos to evaluate")
    names = [name for name, _, _ in pairs]
    for name in names:
        if names.count(name) > 1 or not name or Path(name).name != name or name in (".", ".."):
            raise EvalInputError(f"video name {name!r}: names must be unique, non-empty folder names")
    videos = [_open_video(name, pred, gt, opts) for name, pred, gt in pairs]
    root = None if out_dir is None else output_folder(Path(out_dir))
    folders = [None if root is None else output_folder(root / video.name) for video in videos]
    results = [_evaluate(video, opts, folder) for video, folder in zip(videos, folders)]
    if root is not None:
        _write_summary(results, opts, root)
    return results


def mean_metrics(metrics: Sequence[VideoMetrics]) -> dict[str, float]:
    """Unweighted mean over videos of each metric (the dataset number, as in the paper's tables)."""
    return {key: float(np.mean([getattr(m, key) for m in metrics])) for key in METRIC_NAMES}


def format_summary_table(metrics: Sequence[VideoMetrics]) -> str:
    """Text table: one row per video plus a mean row; AbsRel/delta in %, RMSE in metres."""
    header = ("video", "frames", "AbsRel %", "delta1 %", "delta2 %", "delta3 %", "RMSE m")
    mean_label = f"mean ({len(metrics)} videos)"
    width = max(len(header[0]), len(mean_label), *(len(m.name) for m in metrics))

    def row(label: str, frames: str, values: dict[str, float]) -> str:
        cells = [f"{100 * values[k]:>8.2f}" for k in METRIC_NAMES[:4]] + [f"{values['rmse']:>8.3f}"]
        return f"{label:<{width}}  {frames:>6}  " + "  ".join(cells)

    lines = [f"{header[0]:<{width}}  {header[1]:>6}  " + "  ".join(f"{h:>8}" for h in header[2:])]
    lines.append("-" * len(lines[0]))
    lines += [row(m.name, str(m.n_frames), {k: getattr(m, k) for k in METRIC_NAMES}) for m in metrics]
    lines.append("-" * len(lines[0]))
    lines.append(row(mean_label, str(sum(m.n_frames for m in metrics)), mean_metrics(metrics)))
    return "\n".join(lines)


def format_shot_table(metrics: Sequence[VideoMetrics]) -> str:
    """Text table of every fitted frame range (one per shot with ``per_shot``): frames, metrics
    (AbsRel/delta in %, RMSE in metres), scale and shift; NaN where a shot has no valid pixel."""
    header = ("video", "shot", "frames", "AbsRel %", "delta1 %", "delta2 %", "delta3 %", "RMSE m", "scale", "shift")
    width = max(len(header[0]), *(len(m.name) for m in metrics))
    rows = [(m.name, str(k), f"{a}-{b - 1}", *(f"{100 * values[key]:.2f}" for key in METRIC_NAMES[:4]),
             f"{values['rmse']:.3f}", f"{scale:.4g}", f"{shift:.4g}")
            for m in metrics for k, ((a, b, scale, shift), values) in enumerate(zip(m.fits, m.fit_metrics))]
    widths = [width] + [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header) if i]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    return "\n".join(lines)


def report_text(metrics: Sequence[VideoMetrics], per_shot: bool) -> str:
    """What ``rdengine eval`` prints: the summary table, and with ``per_shot`` every shot's row."""
    return format_summary_table(metrics) + ("\n\n" + format_shot_table(metrics) if per_shot else "")


def read_pairs_csv(path: PathLike) -> list[tuple[str, Path, Path]]:
    """``(name, pred, gt)`` rows of a CSV with header ``name,pred,gt``; relative paths are from the CSV's folder."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, skipinitialspace=True))
            fields = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvalInputError(f"{path}: cannot read pairs CSV ({exc})") from None
    if not {"name", "pred", "gt"} <= fields:
        raise EvalInputError(f"{path}: expected a header name,pred,gt and at least one row")
    pairs = []
    for line, row in enumerate(rows, start=2):
        values = [(row[key] or "").strip() for key in ("name", "pred", "gt")]
        if not all(values):
            raise EvalInputError(f"{path}: line {line} lacks a name, pred or gt")
        pairs.append((values[0], path.parent / values[1], path.parent / values[2]))
    return pairs


def pair_folders(pred_root: PathLike, gt_root: PathLike) -> list[tuple[str, Path, Path]]:
    """Match videos by name: ``<name>.npy``/``<name>.npz``/``<name>/``/``<name>.zarr/`` entries of both roots.

    A prediction without ground truth is an error; ground truth without prediction is a warning.
    """
    preds, gts = _video_entries(Path(pred_root)), _video_entries(Path(gt_root))
    missing = sorted(set(preds) - set(gts))
    if missing:
        raise EvalInputError(f"{gt_root}: no ground truth for predictions {', '.join(missing)}")
    unused = sorted(set(gts) - set(preds))
    if unused:
        warnings.warn(
            f"{pred_root}: no prediction for {len(unused)} ground-truth videos: {', '.join(unused)}",
            stacklevel=2,
        )
    if not preds:
        raise EvalInputError(f"{pred_root}: no predictions (.npy, .npz or folders) found")
    return [(name, preds[name], gts[name]) for name in sorted(preds)]


def _video_entries(root: Path) -> dict[str, Path]:
    """Video name -> path for the ``.npy``/``.npz`` files and folders directly in ``root``."""
    if not root.is_dir():
        raise EvalInputError(f"{root}: not a folder")
    entries: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            name = child.name.removesuffix(".zarr")
        elif child.suffix.lower() in (".npy", ".npz"):
            name = child.stem
        else:
            continue
        if name in entries:
            raise EvalInputError(f"{root}: two entries for video {name!r} ({entries[name].name}, {child.name})")
        entries[name] = child
    return entries


def _default_name(pred_path: Path) -> str:
    """Video name from the prediction path: the run folder for ``OUTDIR/run.zarr``, else the stem."""
    return pred_path.parent.name if pred_path.name == layout.STORE_NAME else pred_path.stem


def _open_video(name: str, pred_path: PathLike, gt_path: PathLike, opts: EvalOptions) -> _Video:
    """Open all inputs of one video and check that they fit together and with the options."""
    if opts.min_depth <= 0 or (opts.max_depth is not None and opts.max_depth <= opts.min_depth):
        raise EvalInputError(f"depth range ({opts.min_depth}, {opts.max_depth}): need 0 < min_depth < max_depth")
    gt = open_depth(gt_path, depth_scale=opts.depth_scale)
    pred = open_depth(pred_path)
    frames, height, width = gt.shape
    if frames == 0:
        raise EvalInputError(f"{gt.path}: no frames")
    if len(pred) != frames:
        raise EvalInputError(f"{pred.path}: {len(pred)} frames, but ground truth {gt.path} has {frames}")
    if abs((pred.shape[2] / pred.shape[1]) / (width / height) - 1) > _ASPECT_TOLERANCE:
        raise EvalInputError(
            f"{pred.path}: prediction is {pred.shape[1]}x{pred.shape[2]}, "
            f"aspect ratio differs from ground truth {gt.path} ({height}x{width})"
        )
    masks = tuple(open_depth(p, depth_scale=1.0) for p in opts.mask_paths())
    for mask in masks:
        if mask.shape[1:] != (height, width) or len(mask) not in (1, frames):
            raise EvalInputError(
                f"{mask.path}: mask is {len(mask)}x{mask.shape[1]}x{mask.shape[2]}, "
                f"expected 1 or {frames} frames of {height}x{width} (ground truth {gt.path})"
            )
    top, bottom, left, right = opts.crop
    if min(opts.crop) < 0 or top + bottom >= height or left + right >= width:
        raise EvalInputError(f"{gt.path}: crop {tuple(opts.crop)} leaves nothing of {height}x{width} frames")
    column = width // 2 if opts.profile_column is None else opts.profile_column
    if not 0 <= column < width:
        raise EvalInputError(f"{gt.path}: profile column {column} outside 0..{width - 1}")
    segments = _shot_ranges(Path(pred_path), frames) if opts.per_shot else ((0, frames),)
    return _Video(name, pred, gt, masks, column, segments)


def _shot_ranges(pred_path: Path, frames: int) -> tuple[tuple[int, int], ...]:
    """The shots of a prediction: from its run store's cuts, or a ``*_shots.json`` beside it."""
    from ..shots.model import shots_from_cuts
    from ..shots.shots_json import read_shots_json

    store = pred_path / layout.STORE_NAME if (pred_path / layout.STORE_NAME).is_dir() else pred_path
    summary = read_summary(str(store)) if store.is_dir() else None
    if summary is not None and "cuts" in summary.info:
        shots = shots_from_cuts(summary.info["cuts"], frames)
    else:
        found = sorted(pred_path.parent.glob("*_shots.json"))
        if len(found) != 1:
            raise EvalInputError(f"{pred_path}: --per-shot needs the prediction's run store or one *_shots.json "
                                 f"beside it ({len(found)} found)")
        try:
            shots, _ = read_shots_json(found[0])
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None
    if not shots or shots[-1].stop != frames:
        raise EvalInputError(f"{pred_path}: its shots cover {shots[-1].stop if shots else 0} frames, not {frames}")
    return tuple((s.start, s.stop) for s in shots)


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``[n, h, w]`` to ``[n, height, width]`` (no-op when the size matches)."""
    if frames.shape[1:] == (height, width):
        return frames
    return np.stack(
        [np.asarray(Image.fromarray(f.astype(np.float32)).resize((width, height), Image.BILINEAR)) for f in frames]
    ).astype(np.float64)


def _chunks(video: _Video, opts: EvalOptions) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(start, pred, gt, valid)`` per frame chunk, all ``[n, H, W]``; ``pred`` resized to the GT size."""
    frames, height, width = video.gt.shape
    top, bottom, left, right = opts.crop
    region = np.zeros((height, width), dtype=bool)
    region[top : height - bottom, left : width - right] = True
    static = [mask.read(0, 1)[0] != 0 for mask in video.masks if len(mask) == 1]
    for keep in static:
        region &= keep
    upper = np.inf if opts.max_depth is None else opts.max_depth
    step = max(1, _CHUNK_PIXELS // (height * width))
    for start in range(0, frames, step):
        stop = min(frames, start + step)
        gt = video.gt.read(start, stop)
        pred = _resize(video.pred.read(start, stop), height, width)
        if not np.isfinite(pred).all():
            raise EvalInputError(f"{video.pred.path}: non-finite prediction values in frames {start}..{stop - 1}")
        valid = region & (gt > opts.min_depth) & (gt < upper)
        for mask in video.masks:
            if len(mask) > 1:
                valid &= mask.read(start, stop) != 0
        yield start, pred, gt, valid


def _overlaps(segments, values, start: int, stop: int):
    """``(value, a, b)``: rows ``[a, b)`` of a chunk of frames ``[start, stop)`` in each segment."""
    for (first, last), value in zip(segments, values):
        if first < stop and last > start:
            yield value, max(first, start) - start, min(last, stop) - start


def _frame_sums(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-frame sums ``[n, 6]``: valid count, AbsRel sum, squared-error sum, delta1..3 counts."""
    g = np.where(valid, gt, 1.0)
    err = np.abs(depth - g)
    ratio = np.maximum(depth / g, g / depth)
    columns = [valid, np.where(valid, err / g, 0.0), np.where(valid, err * err, 0.0)]
    columns += [valid & (ratio < t) for t in _THRESHOLDS]
    return np.stack([c.sum(axis=(1, 2), dtype=np.float64) for c in columns], axis=-1)


def _metrics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Metric name -> value from :func:`_frame_sums` rows ``[..., 6]`` (NaN where nothing is valid)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[..., 1:] / sums[..., :1]
    return {
        "abs_rel": means[..., 0],
        "delta1": means[..., 2],
        "delta2": means[..., 3],
        "delta3": means[..., 4],
        "rmse": np.sqrt(means[..., 1]),
    }


def _evaluate(video: _Video, opts: EvalOptions, out_dir: Path | None) -> VideoMetrics:
    """Fit (pass 1), score (pass 2) and optionally write the outputs of one opened video."""
    fits = [_LinearFit() for _ in video.segments]
    gt_min, gt_max = np.inf, 0.0
    for start, pred, gt, valid in _chunks(video, opts):
        for fit, a, b in _overlaps(video.segments, fits, start, start + len(gt)):
            fit.add(pred[a:b][valid[a:b]], 1.0 / gt[a:b][valid[a:b]])
        gt_min = min(gt_min, float(gt[valid].min(initial=np.inf)))
        gt_max = max(gt_max, float(gt[valid].max(initial=0.0)))
    if sum(fit.n for fit in fits) == 0:
        raise EvalInputError(f"{video.gt.path}: no valid ground-truth pixels (check depth range, crop and masks)")
    if gt_min == gt_max:
        raise EvalInputError(f"{video.gt.path}: the ground truth is constant ({gt_max:g} m at every valid pixel); "
                             "any prediction would score perfectly against it")
    solved = [fit.solve() for fit in fits]
    if any(scale <= 0 for scale, _ in solved):
        warnings.warn(
            f"{video.pred.path}: fitted scale {min(s for s, _ in solved):.3g} <= 0; is the prediction depth, "
            "not inverse depth?",
            stacklevel=3,
        )
    scale, shift = solved[0]
    depth_range = (opts.min_depth, gt_max if opts.max_depth is None else opts.max_depth)

    frames, height, _ = video.gt.shape
    sums = np.zeros((frames, 6))
    step = -(-frames // _PROFILE_MAX_FRAMES)
    shown = np.arange(0, frames, step)
    profile = {"gt": np.zeros((height, len(shown)), np.float32)}
    profile["pred"], profile["valid"] = np.zeros_like(profile["gt"]), np.zeros(profile["gt"].shape, bool)
    for start, pred, gt, valid in _chunks(video, opts):
        stop = start + len(gt)
        depth = np.empty_like(pred)
        for (a_scale, a_shift), a, b in _overlaps(video.segments, solved, start, stop):
            depth[a:b] = align_to_depth(pred[a:b], a_scale, a_shift, min_depth=depth_range[0],
                                        max_depth=depth_range[1])
        sums[start:stop] = _frame_sums(depth, gt, valid)
        picked = shown[(shown >= start) & (shown < stop)]
        for key, array in (("gt", gt), ("pred", depth), ("valid", valid)):
            profile[key][:, picked // step] = array[picked - start, :, video.column].T

    pooled = {k: float(v) for k, v in _metrics_from_sums(sums.sum(axis=0)).items()}
    segment_sums = [sums[a:b].sum(axis=0) for a, b in video.segments]
    fit_metrics = tuple({"n_valid": int(total[0]), **{k: float(v) for k, v in _metrics_from_sums(total).items()}}
                        for total in segment_sums)
    per_frame = {"n_valid": sums[:, 0].astype(np.int64), **_metrics_from_sums(sums)}
    metrics = VideoMetrics(
        name=video.name,
        pred_path=str(video.pred.path),
        gt_path=str(video.gt.path),
        n_frames=frames,
        n_valid=sum(fit.n for fit in fits),
        scale=scale,
        shift=shift,
        fits=tuple((a, b, s, t) for (a, b), (s, t) in zip(video.segments, solved)),
        fit_metrics=fit_metrics,
        depth_range=depth_range,
        per_frame=per_frame,
        **pooled,
    )
    if out_dir is not None:
        _write_video_outputs(metrics, opts, profile, video.column, step, out_dir)
    return metrics


def _write_video_outputs(
    metrics: VideoMetrics,
    opts: EvalOptions,
    profile: dict[str, np.ndarray],
    column: int,
    frame_step: int,
    out_dir: Path,
) -> None:
    """``metrics.json``, ``per_frame.csv``, ``per_frame.png`` and ``profile.png`` in ``out_dir``.

    ``profile`` holds ``gt``, ``pred`` (aligned depth) and ``valid`` ``[H, T / frame_step]`` of one column.
    """
    report = {**metrics.to_dict(), "options": opts.to_dict()}
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    keys = ("n_valid", *METRIC_NAMES)
    with (out_dir / "per_frame.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("frame", *keys))
        for frame in range(metrics.n_frames):
            writer.writerow((frame, *(metrics.per_frame[k][frame] for k in keys)))
    title = f"{metrics.name}: AbsRel {100 * metrics.abs_rel:.2f}%, delta1 {100 * metrics.delta1:.2f}%"
    plot_per_frame(
        metrics.per_frame["abs_rel"],
        metrics.per_frame["delta1"],
        video_abs_rel=metrics.abs_rel,
        video_delta1=metrics.delta1,
        title=title,
        path=out_dir / "per_frame.png",
    )
    plot_temporal_profile(
        profile["gt"],
        profile["pred"],
        profile["valid"],
        column=column,
        frame_step=frame_step,
        title=title,
        path=out_dir / "profile.png",
    )


def _write_summary(metrics: Sequence[VideoMetrics], opts: EvalOptions, out_dir: Path) -> None:
    """``summary.csv`` (videos + mean row), ``summary.json`` and ``summary.txt`` in ``out_dir``."""
    mean = mean_metrics(metrics)
    columns = ("name", "n_frames", "n_valid", *METRIC_NAMES, "scale", "shift")
    with (out_dir / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(m.to_dict() for m in metrics)
        writer.writerow({"name": "mean", **mean})
    summary = {"videos": [m.to_dict() for m in metrics], "mean": mean, "options": opts.to_dict()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out_dir / "summary.txt").write_text(report_text(metrics, opts.per_shot) + "\n")

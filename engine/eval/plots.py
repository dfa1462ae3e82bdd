"""Evaluation pictures (matplotlib, Agg, no display): per-frame curves and a temporal depth profile.

Every figure is ``PLOT_SIZE_PX`` = 1000 x 700 pixels (10 x 7 inches at 100 dpi), RGBA PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

_DPI = 100
_FIGSIZE_IN = (10.0, 7.0)
PLOT_SIZE_PX = (int(_FIGSIZE_IN[0] * _DPI), int(_FIGSIZE_IN[1] * _DPI))  # (width, height)
_INVALID_COLOR = "0.6"


def _new_figure() -> Figure:
    """A figure of exactly ``PLOT_SIZE_PX`` (constrained layout, no pyplot state)."""
    return Figure(figsize=_FIGSIZE_IN, dpi=_DPI, layout="constrained")


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def plot_per_frame(
    abs_rel: np.ndarray,
    delta1: np.ndarray,
    *,
    video_abs_rel: float,
    video_delta1: float,
    title: str,
    path: str | Path,
) -> Path:
    """Per-frame AbsRel and delta1 (``[T]`` fractions, NaN = no valid pixel) as % over frames.

    Dashed lines mark the pooled video values. The AbsRel axis starts just below 0 and the delta1
    axis spans at least 90-100 % (tiny dips are not magnified), each with a margin so that a curve
    at 0 % or 100 % is drawn inside the axes, never hidden on their edge. Returns ``path``.
    """
    fig = _new_figure()
    top, bottom = fig.subplots(2, 1, sharex=True)
    frames = np.arange(len(abs_rel))
    for ax, values, pooled, label, color in (
        (top, abs_rel, video_abs_rel, "AbsRel % (lower is better)", "tab:red"),
        (bottom, delta1, video_delta1, "delta1 % (higher is better)", "tab:blue"),
    ):
        ax.plot(frames, 100 * values, color=color, linewidth=1.0, marker="." if len(frames) < 60 else None)
        ax.axhline(100 * pooled, color="black", linestyle="--", linewidth=1.0, label=f"video: {100 * pooled:.2f}%")
        ax.set_ylabel(label)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    highest = np.nanmax(100 * abs_rel, initial=0.0)
    top.set_ylim(-0.03 * max(highest, 1.0), max(highest, 1.0) * 1.08)
    lowest = np.nanmin(100 * delta1, initial=100.0)
    bottom.set_ylim(min(90.0, lowest - 2.0), 100.5)
    bottom.set_xlabel("frame")
    top.set_title(title)
    return _save(fig, path)


def plot_temporal_profile(
    gt: np.ndarray,
    pred: np.ndarray,
    valid: np.ndarray,
    *,
    column: int,
    frame_step: int = 1,
    title: str,
    path: str | Path,
) -> Path:
    """One image column over time: ground truth, aligned prediction and relative error.

    ``gt``, ``pred`` (aligned depth, m) and ``valid`` (bool) are ``[H, n]``: image row by shown frame,
    the shown frames being ``0, frame_step, 2 * frame_step, ...``.
    Ground truth and prediction share one colour scale (1st-99th percentile of valid ground truth);
    invalid ground truth and its error are grey. Flicker shows as vertical stripes, drift as slow
    colour change along time. Returns ``path``.
    """
    height, shown = gt.shape
    reference = gt[valid] if valid.any() else pred.ravel()
    vmin, vmax = np.percentile(reference, [1, 99])
    depth_cmap = matplotlib.colormaps["turbo"].with_extremes(bad=_INVALID_COLOR)
    error_cmap = matplotlib.colormaps["magma"].with_extremes(bad=_INVALID_COLOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_error = np.where(valid, np.abs(pred - gt) / gt, np.nan)
    panels = (
        ("ground truth", np.where(valid, gt, np.nan), depth_cmap, vmin, vmax),
        ("prediction (aligned)", pred, depth_cmap, vmin, vmax),
        ("|d - d*| / d*", rel_error, error_cmap, 0.0, 0.5),
    )
    fig = _new_figure()
    axes = fig.subplots(3, 1, sharex=True, sharey=True)
    extent = (-0.5 * frame_step, (shown - 0.5) * frame_step, height - 0.5, -0.5)
    images = []
    for ax, (label, data, cmap, lo, hi) in zip(axes, panels, strict=True):
        images.append(
            ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="antialiased", extent=extent)
        )
        ax.set_ylabel(f"{label}\nrow")
    axes[-1].set_xlabel("frame" if frame_step == 1 else f"frame (one in {frame_step} shown)")
    axes[0].set_title(f"{title}\ncolumn {column} over time")
    fig.colorbar(images[0], ax=axes[:2], label="depth (m)", extend="both")
    fig.colorbar(images[2], ax=axes[2], label="relative error", extend="max")
    return _save(fig, path)

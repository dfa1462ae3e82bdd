"""Synthetic RollingDepth snippets with known ground truth (test and benchmark utility).

``make_synthetic_case`` renders a relative inverse-depth video (a panning back wall,
a floor plane with a moving horizon, and a near disc that enters the view from the
left, repeatedly), then cuts it into dilated snippets as SPEC.md does: snippet ``i`` of
dilation ``d`` holds GT frames ``i, i+d, ..``, mapped by a random affine (scale in
[0.5, 2], shift in [-0.3, 0.3]) with Gaussian noise and outlier pixels, like the
per-snippet affine ambiguity of the depth model. ``merge_in_memory`` (the pipeline's
merge over in-memory arrays) and ``absrel_after_affine`` evaluate a co-alignment against
the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..coalign import AlignResult, frames_from_shapes, sample_pixels
from ..snippets import SnippetGroup
from ..stages.merge import merge_frames

_PERIOD = 240.0  # frames per cycle of the camera / horizon motion
_ENTRY = 300.0  # frames for the near disc to cross the view once


@dataclass
class SyntheticCase:
    """Ground truth and snippets of one synthetic video.

    ``gt``: ``[T, h, w]`` float32 inverse depth (positive, about 0.1 .. 1); ``snippets``:
    one ``[N_g, L_g, h, w]`` float32 array per dilation. ``h, w`` are the video size, or
    the SPEC sample grid of it when ``sampled`` is true. ``scales``/``shifts`` are the
    affine maps applied to each snippet (float64 ``[N_g]``).
    """

    gt: np.ndarray
    snippets: list
    dilations: list[int]
    lengths: list[int]
    scales: list[np.ndarray]
    shifts: list[np.ndarray]
    sampled: bool


def _grid(height: int, width: int, sampled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalized pixel-centre coordinates (rows, columns) in [0, 1], optionally on the SPEC sample grid."""
    rows = np.broadcast_to(np.arange(height, dtype=np.float64)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float64)[None, :], (height, width))
    if sampled:
        rows, cols = sample_pixels(rows), sample_pixels(cols)
    return ((rows[:, 0] + 0.5) / height).astype(np.float32), ((cols[0] + 0.5) / width).astype(np.float32)


def render_inverse_depth(frames: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Ground-truth inverse depth ``[F, len(v), len(u)]`` at frame indices ``frames``.

    ``v``/``u``: normalized row / column coordinates in [0, 1].
    """
    t = np.asarray(frames, dtype=np.float32)[:, None, None]
    vv, uu = v[None, :, None], u[None, None, :]
    phase = 2 * np.pi * t / _PERIOD
    wall = 0.15 + 0.04 * np.sin(phase) + 0.08 * (uu - 0.5) * np.cos(0.7 * phase)
    horizon = 0.55 + 0.05 * np.sin(0.5 * phase)
    floor = 0.2 + 0.7 * np.clip((vv - horizon) / (1.0 - horizon), 0.0, 1.0)
    scene = np.maximum(wall, np.where(vv > horizon, floor, 0.0))
    cx = -0.3 + 1.2 * np.mod(t / _ENTRY, 1.0)
    dist2 = ((uu - cx) / 0.18) ** 2 + ((vv - 0.45) / 0.25) ** 2
    disc = np.where(dist2 < 1.0, 0.95 - 0.15 * dist2, 0.0)
    return np.maximum(scene, disc).astype(np.float32)


def make_synthetic_case(num_frames: int, height: int, width: int, dilations: list[int], snippet_len: int = 3,
                        seed: int = 0, noise: float = 0.02, outlier_frac: float = 0.05, sampled_only: bool = False,
                        chunk: int = 512) -> SyntheticCase:
    """Render a synthetic video and its dilated snippets.

    ``height``/``width``: video size in pixels; with ``sampled_only`` only the SPEC sample
    grid of it is rendered (``sample_pixels``), so a 768x432 video gives 43x77 maps and
    long videos stay small. ``noise``: Gaussian std in GT inverse-depth units;
    ``outlier_frac``: share of pixels replaced by a uniform value in [0, 1.2] (GT units).
    Snippets are generated ``chunk`` at a time to bound the temporaries.
    """
    rng = np.random.default_rng(seed)
    v, u = _grid(height, width, sampled_only)
    gt = render_inverse_depth(np.arange(num_frames), v, u)
    snippets, scales, shifts = [], [], []
    for d in dilations:
        count = num_frames - (snippet_len - 1) * d
        if count < 1:
            raise ValueError(f"dilation {d} leaves no snippet of length {snippet_len} in {num_frames} frames")
        scale = rng.uniform(0.5, 2.0, count)
        shift = rng.uniform(-0.3, 0.3, count)
        dest = np.empty((count, snippet_len, len(v), len(u)), np.float32)
        for lo in range(0, count, chunk):
            hi = min(count, lo + chunk)
            frames = np.arange(lo, hi)[:, None] + d * np.arange(snippet_len)[None, :]
            x = gt[frames] + noise * rng.standard_normal(frames.shape + gt.shape[1:], dtype=np.float32)
            outliers = rng.random(x.shape, dtype=np.float32) < outlier_frac
            x[outliers] = rng.uniform(0.0, 1.2, int(outliers.sum())).astype(np.float32)
            dest[lo:hi] = x * scale[lo:hi, None, None, None].astype(np.float32) + shift[lo:hi, None, None, None]
        snippets.append(dest)
        scales.append(scale)
        shifts.append(shift)
    return SyntheticCase(gt=gt, snippets=snippets, dilations=list(dilations), lengths=[snippet_len] * len(dilations),
                         scales=scales, shifts=shifts, sampled=sampled_only)


def merge_in_memory(snippets: list, dilations: list[int], result: AlignResult, chunk: int = 256) -> np.ndarray:
    """Aligned video ``[T, h, w]`` float64: per frame the mean of its observations
    ``s_k * (x - global_min) + t_k``, the pipeline's merge without its final [-1, 1]
    normalization, over in-memory ``[N_g, L_g, h, w]`` snippets (full resolution or samples).
    """
    num_frames = frames_from_shapes([x.shape for x in snippets], dilations)
    groups = [SnippetGroup(dilation=d, length=x.shape[1], num_frames=num_frames) for x, d in zip(snippets, dilations)]
    return np.concatenate([merge_frames(snippets, groups, result.scales, result.shifts, result.global_min, a,
                                        min(a + chunk, num_frames))
                           for a in range(0, num_frames, chunk)])


def absrel_after_affine(pred: np.ndarray, gt: np.ndarray, min_inverse_depth: float = 1e-3) -> float:
    """AbsRel in depth after one least-squares affine fit of ``pred`` to ``gt`` for the whole video.

    ``pred``, ``gt``: inverse depth ``[T, h, w]`` (same shape). The fit is done in inverse
    depth (the prediction's space); depths are ``1 / max(inverse depth, min_inverse_depth)``.
    """
    p, g = np.asarray(pred, np.float64).ravel(), np.asarray(gt, np.float64).ravel()
    design = np.stack([p, np.ones_like(p)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, g, rcond=None)
    depth = 1.0 / np.maximum(a * p + b, min_inverse_depth)
    gt_depth = 1.0 / g
    return float(np.mean(np.abs(depth - gt_depth) / gt_depth))

"""Co-alignment of RollingDepth snippets: one scale and shift per snippet (SPEC.md).

Frame ``f`` is observed by every (snippet, slot) pair holding it: slot ``j`` of snippet
``i`` of a group with dilation ``d`` is frame ``i + j*d``. Observations are laid out in
*columns* ``o = (group, slot)``: within a column consecutive frames are consecutive
snippets, so any window of frames is a set of contiguous slices of the sample arrays.

Both solvers work on the SPEC objective over min-shifted, sampled maps ``x``: with
``x' = s_k x + t_k``, per frame the L1 distance of every observation to the frame mean,
over the frame's mean absolute target, in inverse depth and in depth (``1/clip(x')``),
plus the scale/shift regularizer.

- ``reference``: the published rule, Adam (lr 1e-3, betas 0.5/0.9) for 2000 steps on the
  gradient with targets and normalizers held constant, float32.
- ``fast`` (default): a closed-form least-squares start (a banded system in the 2K
  unknowns built from per-frame Gram statistics), then L-BFGS on the objective,
  preconditioned by that system, first on a coarse pixel subset, then on all pixels,
  each stopped on a relative tolerance. Its gradient follows the targets (frame means)
  but, like the published one, holds the per-frame normalizers constant: descending
  through them lowers the objective by raising the level of badly aligned frames, which
  costs temporal consistency (AbsRel 0.15-0.19 instead of 0.14-0.16 on the benchmark).

Every data pass walks the samples in frame windows. Below the memory budget the windows
are kept after the first pass; above it they are re-read in chunks along the snippet axis.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy import linalg

SOLVERS = ("fast", "reference")

BORDER = 2  # pixels cropped at each border before sampling
STRIDE = 10  # keep every STRIDE-th pixel of the cropped map
CLIP = 1e-3  # inverse depth is clipped below at CLIP before the reciprocal (depth space)
REG_SCALE = 0.1  # weight of mean(max(0, 1 - s)^2) per group
REG_SHIFT = 10.0  # weight of mean(t^2) per group
ADAM_LR, ADAM_BETAS, ADAM_STEPS = 1e-3, (0.5, 0.9), 2000

_WINDOW_VALUES = 1 << 18  # floats per [columns, frames, pixels] work tensor (cache-sized)
_COARSE_PIXELS = 400  # pixels per map on the fast solver's coarse level
_LS_SPREAD = 0.05  # residual spread (fraction of a_f) at which the LS start mimics the L1 term
_FAST_MAX_ITER = 200
_Y_CLIPPED = float(1.0 / torch.tensor(CLIP, dtype=torch.float32))  # 1/clip(x') where x' is clipped


def sample_pixels(x):
    """SPEC optimization sampling of ``[..., H, W]`` maps: crop ``BORDER`` px per side,
    keep every ``STRIDE``-th pixel (a strided view for numpy/torch arrays)."""
    h, w = x.shape[-2:]
    return x[..., BORDER:h - BORDER:STRIDE, BORDER:w - BORDER:STRIDE]


def frames_from_shapes(shapes: Sequence[Sequence[int]], dilations: Sequence[int]) -> int:
    """Video length ``T = N_g + (L_g - 1) d_g`` from snippet-array shapes ``[N_g, L_g, ...]``.

    Raises ``ValueError`` when the groups disagree.
    """
    if len(shapes) != len(dilations) or not shapes:
        raise ValueError(f"{len(shapes)} snippet groups for {len(dilations)} dilations")
    lengths = {int(s[0]) + (int(s[1]) - 1) * int(d) for s, d in zip(shapes, dilations)}
    if len(lengths) != 1:
        raise ValueError(f"snippet groups imply different video lengths {sorted(lengths)}")
    return lengths.pop()


@dataclass
class AlignResult:
    """Co-alignment parameters: a full-resolution map ``x`` of snippet ``k`` of group ``g``
    maps to ``scales[g][k] * (x - global_min) + shifts[g][k]``.

    ``scales``/``shifts``: float64 ``[N_g]`` per group; ``objective``: SPEC objective at
    these parameters; ``iterations``: optimizer steps; ``loss_history``: objective per step
    (``fast``: on its coarse pixel subset first, then on all pixels).
    """

    scales: list[np.ndarray]
    shifts: list[np.ndarray]
    global_min: float
    objective: float
    iterations: int
    loss_history: np.ndarray
    solver: str


class _Graph:
    """Snippet graph geometry: group sizes, global snippet ids, observation columns."""

    def __init__(self, dilations: Sequence[int], lengths: Sequence[int], num_frames: int):
        if len(dilations) != len(lengths) or not dilations:
            raise ValueError(f"{len(dilations)} dilations for {len(lengths)} snippet lengths")
        self.num_frames = int(num_frames)
        self.dilations, self.lengths = [int(d) for d in dilations], [int(n) for n in lengths]
        self.counts = [self.num_frames - (n - 1) * d for d, n in zip(self.dilations, self.lengths)]
        if min(self.counts) < 1 or min(self.dilations) < 1 or min(self.lengths) < 1:
            raise ValueError(f"no snippet fits: dilations {self.dilations}, lengths {self.lengths}, "
                             f"{self.num_frames} frames")
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.num_snippets = int(self.offsets[-1])
        cols = [(g, j) for g in range(len(self.counts)) for j in range(self.lengths[g])]
        self.num_cols = len(cols)
        self.col_group = np.array([g for g, _ in cols], dtype=np.int64)
        self.col_slot = np.array([j for _, j in cols], dtype=np.int64)
        self.col_delay = np.array([j * self.dilations[g] for g, j in cols], dtype=np.int64)
        self.col_count = np.array([self.counts[g] for g, _ in cols], dtype=np.int64)
        # frames [full_lo, full_hi) have an observation in every column
        self.full_lo = int(self.col_delay.max())
        self.full_hi = max(self.full_lo, int((self.col_delay + self.col_count).min()))

    def ids(self, f0: int, f1: int) -> np.ndarray:
        """``[columns, f1-f0]`` global snippet ids observing frames ``[f0, f1)``;
        ``num_snippets`` (a parameter slot held at zero) where a column has none."""
        index = np.arange(f0, f1)[None, :] - self.col_delay[:, None]
        valid = (index >= 0) & (index < self.col_count[:, None])
        return np.where(valid, index + self.offsets[self.col_group][:, None], self.num_snippets)

    def split(self, vector: np.ndarray) -> list[np.ndarray]:
        """Per-group pieces of a ``[num_snippets]`` vector."""
        return [vector[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def per_snippet(self) -> np.ndarray:
        """``[num_snippets]`` weight ``1 / N_g`` of each snippet in its group's mean."""
        return np.repeat(1.0 / np.asarray(self.counts, np.float64), self.counts)

    def regularizer(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """SPEC regularizer at ``theta = [s, t]`` and its gradient (float64 ``[2K]``)."""
        k, per = self.num_snippets, self.per_snippet()
        low = np.maximum(0.0, 1.0 - theta[:k])
        value = float(np.sum(per * (REG_SCALE * low ** 2 + REG_SHIFT * theta[k:] ** 2)))
        return value, np.concatenate([-2.0 * REG_SCALE * per * low, 2.0 * REG_SHIFT * per * theta[k:]])


@dataclass
class _Window:
    """Observations of frames ``[f0, f1)``: ``x`` ``[columns, F, P]`` float32 min-shifted
    maps (zero where missing), ``ids`` ``[columns, F]``, ``mask`` ``[columns, F]`` float32
    (None when every column observes every frame), ``count`` ``[F]`` observations per frame."""

    f0: int
    f1: int
    x: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor | None
    count: torch.Tensor


class _Observations:
    """Frame windows over the sampled snippet maps: kept after the first pass when they
    fit in half the memory budget, else re-read in chunks on every pass.

    ``samples``: per group ``[N_g, L_g, P_h, P_w]`` array-likes, sliced along axis 0 only;
    ``pixel_step``: keep every ``pixel_step``-th pixel of the flattened maps (coarse level).
    """

    def __init__(self, samples: Sequence, graph: _Graph, global_min: float, memory_budget: int,
                 pixel_step: int = 1):
        self.samples, self.graph, self.global_min = list(samples), graph, float(global_min)
        map_shape = tuple(self.samples[0].shape[2:])
        for g, (x, n, length) in enumerate(zip(self.samples, graph.counts, graph.lengths)):
            if tuple(x.shape) != (n, length) + map_shape or len(map_shape) != 2:
                raise ValueError(f"samples[{g}] has shape {tuple(x.shape)}, expected {(n, length) + map_shape} "
                                 f"for {graph.num_frames} frames, dilation {graph.dilations[g]}")
        raw_pixels = int(np.prod(map_shape))
        self.pixel_step = pixel_step
        self.pixels = len(range(0, raw_pixels, pixel_step))
        self.cacheable = 2 * 4 * graph.num_cols * self.pixels * graph.num_frames <= memory_budget
        self.cached: list[_Window] | None = None
        # a chunk reads its frames plus a halo of (L-1)d earlier snippets per group: at most a
        # sixteenth of the budget (once the budget exceeds the halo)
        halo = max((n - 1) * d for n, d in zip(graph.lengths, graph.dilations))
        self.window = max(1, _WINDOW_VALUES // (graph.num_cols * self.pixels))
        chunk = memory_budget // (16 * 4 * graph.num_cols * raw_pixels) - halo
        self.chunk = max(1, chunk // self.window) * self.window  # whole windows: same windows cached or not

    def __iter__(self) -> Iterator[_Window]:
        if self.cached is not None:
            yield from self.cached
            return
        kept = []
        for c0 in range(0, self.graph.num_frames, self.chunk):
            for win in self._read_chunk(c0, min(self.graph.num_frames, c0 + self.chunk)):
                if self.cacheable:
                    kept.append(win)
                yield win
        if self.cacheable:
            self.cached = kept

    def _edges(self, c0: int, c1: int) -> list[int]:
        """Window edges in ``[c0, c1]``: multiples of ``window`` and where coverage changes,
        so the windows (and float sums) do not depend on the chunking."""
        g = self.graph
        inner = set(range(c0 - c0 % self.window + self.window, c1, self.window)) | {g.full_lo, g.full_hi}
        return sorted({c0, c1} | {b for b in inner if c0 < b < c1})

    def _read_chunk(self, c0: int, c1: int) -> Iterator[_Window]:
        g = self.graph
        blocks, starts = [], []
        for x, n, length, d in zip(self.samples, g.counts, g.lengths, g.dilations):
            lo, hi = max(0, c0 - (length - 1) * d), min(n, c1)
            block = np.asarray(x[lo:hi], dtype=np.float32).reshape(hi - lo, length, -1)
            blocks.append(block[..., ::self.pixel_step])  # may view the caller's array: only read
            starts.append(lo)
        edges = self._edges(c0, c1)
        for f0, f1 in zip(edges[:-1], edges[1:]):
            ids = g.ids(f0, f1)
            valid = ids < g.num_snippets
            full = bool(valid.all())
            x = (np.empty if full else np.zeros)((g.num_cols, f1 - f0, self.pixels), dtype=np.float32)
            for o in range(g.num_cols):
                grp, slot, delay = g.col_group[o], g.col_slot[o], g.col_delay[o]
                i0, i1 = max(f0 - delay, 0), min(f1 - delay, g.col_count[o])
                if i1 > i0:
                    np.subtract(blocks[grp][i0 - starts[grp]:i1 - starts[grp], slot], self.global_min,
                                out=x[o, i0 + delay - f0:i1 + delay - f0])
            yield _Window(f0, f1, torch.from_numpy(x), torch.from_numpy(ids),
                          None if full else torch.from_numpy(valid.astype(np.float32)),
                          torch.from_numpy(valid.sum(0).astype(np.float32)))


class _Workspace:
    """Work tensors shared by the windows of a pass (fresh large tensors would page-fault)."""

    def __init__(self, cols: int, frames: int, pixels: int):
        size = cols * frames * pixels
        self.flat = [torch.empty(size, dtype=torch.float32) for _ in range(5)]

    def get(self, index: int, shape: torch.Size) -> torch.Tensor:
        """Work tensor ``index`` (0..4) viewed as ``shape``."""
        return self.flat[index][:shape.numel()].view(shape)


def _safe_inverse(a: torch.Tensor) -> torch.Tensor:
    """``1/a`` where ``a > 0``, else 0: frames without observations or with an all-zero
    target contribute nothing (the published code would divide by zero there)."""
    return torch.where(a > 0, 1.0 / a, torch.zeros_like(a))


def _window_terms(win: _Window, sc: torch.Tensor, sh: torch.Tensor, w_d: float, grad: str | None,
                  work: _Workspace) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """Data sum of one window (before the SPEC divisor) and its derivatives wrt ``s``, ``t``
    per observation (``[columns, F]``); ``sc``/``sh``: the observations' scale and shift."""
    x, mask, shape = win.x, win.mask, win.x.shape
    full = None if mask is None else mask[..., None]
    inv_count = (1.0 / win.count.clamp(min=1.0))[:, None]
    xp = torch.mul(x, sc[..., None], out=work.get(0, shape)).add_(sh[..., None])  # x' [C, F, P]
    m = xp.sum(0).mul_(inv_count)  # target m_f [F, P]
    ia = _safe_inverse(m.abs().mean(1))  # 1 / a_f [F]
    r = torch.sub(xp, m, out=work.get(1, shape))
    e = torch.abs(r, out=work.get(2, shape)).sum(-1)  # sum_p |x' - m_f| [C, F]
    y = xp.clamp_(min=CLIP).reciprocal_()  # depth space
    if full is not None:
        e.mul_(mask)
        y.mul_(full)
    md = y.sum(0).mul_(inv_count)
    iad = _safe_inverse(md.mean(1))  # md >= 0: mean |md| = mean md
    rd = torch.sub(y, md, out=work.get(3, shape))
    ed = torch.abs(rd, out=work.get(4, shape)).sum(-1)
    if full is not None:
        ed.mul_(mask)
    e, ed = e.sum(0), ed.sum(0)  # per frame [F]
    value = float((e * ia).double().sum() + w_d * (ed * iad).double().sum())
    if grad is None:
        return value, None, None
    sr, srd = torch.sign(r, out=work.get(1, shape)), torch.sign(rd, out=work.get(3, shape))
    if full is not None:
        sr.mul_(full)
        srd.mul_(full)
    # d(1/clip(x'))/dx' = -q, q = y^2 where x' is not clipped (y is exactly 1/CLIP where it is)
    q = torch.nn.functional.threshold_(torch.neg(y, out=work.get(2, shape)), -_Y_CLIPPED, 0.0).square_()
    coupled = grad == "coupled"
    if coupled:  # the targets m_f, md_f move with every observation of frame f
        target_d, target_x = (iad[:, None] * srd.sum(0)).mul_(inv_count), (ia[:, None] * sr.sum(0)).mul_(inv_count)
    g = srd.mul_(-w_d * iad[:, None])  # d(data sum)/dx' [C, F, P], the depth part first
    if coupled:
        g.add_(target_d, alpha=w_d)
    g.mul_(q).addcmul_(sr, ia[:, None])
    if coupled:
        g.sub_(target_x)
    g_t, g_s = g.sum(-1), torch.mul(g, x, out=work.get(4, shape)).sum(-1)
    if mask is not None:
        g_t, g_s = g_t * mask, g_s * mask
    return value, g_s, g_t


def _evaluate(obs: _Observations, theta: np.ndarray, w_d: float, grad: str | None):
    """SPEC objective at ``theta = [s, t]`` (``[2K]``) and, unless ``grad`` is None, its
    gradient with the per-frame normalizers ``a_f``, ``ad_f`` held constant: ``"detached"``
    holds the targets ``m_f``, ``md_f`` constant too (the published gradient),
    ``"coupled"`` differentiates through them."""
    g = obs.graph
    k = g.num_snippets
    params = torch.from_numpy(np.insert(theta, [k, 2 * k], 0.0).astype(np.float32)).view(2, k + 1)
    derivs = torch.zeros(2, k + 1, dtype=torch.float64)
    work = _Workspace(g.num_cols, obs.window, obs.pixels)
    total = 0.0
    for win in obs:
        value, d_s, d_t = _window_terms(win, params[0][win.ids], params[1][win.ids], w_d, grad, work)
        total += value
        if grad is not None:
            derivs[0].index_add_(0, win.ids.reshape(-1), d_s.reshape(-1).double())
            derivs[1].index_add_(0, win.ids.reshape(-1), d_t.reshape(-1).double())
    norm = float(sum(g.lengths) * g.num_frames * obs.pixels)  # SPEC divisor: (sum of L) * T * P
    reg, reg_grad = g.regularizer(theta)
    if grad is None:
        return total / norm + reg, None
    return total / norm + reg, derivs[:, :k].reshape(-1).numpy() / norm + reg_grad


def objective(samples: Sequence, dilations: Sequence[int], lengths: Sequence[int], num_frames: int,
              global_min: float, scales: Sequence[np.ndarray], shifts: Sequence[np.ndarray], w_d: float = 1.0,
              memory_budget: int = 1 << 30) -> float:
    """SPEC co-alignment objective for per-group ``scales``/``shifts`` (``[N_g]`` each);
    ``samples`` and ``global_min`` as for ``solve``."""
    obs = _Observations(samples, _Graph(dilations, lengths, num_frames), global_min, memory_budget)
    theta = np.concatenate([np.asarray(v, np.float64).ravel() for v in (*scales, *shifts)])
    return _evaluate(obs, theta, w_d, None)[0]


def _reference(obs: _Observations, w_d: float, steps: int) -> tuple[np.ndarray, list[float]]:
    """Published solver: Adam on float32 ``(s, t)`` from (1, 0) with targets and normalizers
    held constant in the gradient. Returns (theta ``[2K]``, objective before each step)."""
    k = obs.graph.num_snippets
    s = torch.ones(k, dtype=torch.float32, requires_grad=True)
    t = torch.zeros(k, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([s, t], lr=ADAM_LR, betas=ADAM_BETAS)
    history = []
    for _ in range(steps):
        value, grad = _evaluate(obs, torch.cat([s, t]).detach().double().numpy(), w_d, "detached")
        history.append(value)
        s.grad, t.grad = torch.from_numpy(grad).float().view(2, k)
        optimizer.step()
    return torch.cat([s, t]).detach().double().numpy(), history


@dataclass
class _FrameStats:
    """Per-frame sufficient statistics of min-shifted samples (float64): ``gram``
    ``[T, C, C]`` pixel sums of products between a frame's observations, ``sums`` ``[T, C]``
    pixel sums; ``ids``/``mask`` ``[T, C]``: observing snippet per column and validity."""

    gram: np.ndarray
    sums: np.ndarray
    ids: np.ndarray
    mask: np.ndarray
    pixels: int

    def frames(self, f0: int, f1: int) -> _FrameStats:
        """The statistics of frames ``[f0, f1)`` (views)."""
        return _FrameStats(self.gram[f0:f1], self.sums[f0:f1], self.ids[f0:f1], self.mask[f0:f1], self.pixels)


def _frame_stats(obs: _Observations) -> _FrameStats:
    """One pass accumulating ``_FrameStats``."""
    g = obs.graph
    gram = np.zeros((g.num_frames, g.num_cols, g.num_cols))
    sums = np.zeros((g.num_frames, g.num_cols))
    buffer = torch.empty(g.num_cols * obs.window * obs.pixels, dtype=torch.float64)  # reused: no heap churn
    for win in obs:
        xf = buffer[:win.x.numel()].view(win.x.shape).copy_(win.x).transpose(0, 1)  # [F, C, P]
        gram[win.f0:win.f1] = torch.bmm(xf, xf.transpose(1, 2)).numpy()
        sums[win.f0:win.f1] = xf.sum(-1).numpy()
    ids = g.ids(0, g.num_frames).T
    return _FrameStats(gram, sums, ids, ids < g.num_snippets, obs.pixels)


def _ls_entries(st: _FrameStats, weights: np.ndarray, num_snippets: int):
    """COO triplets (rows, cols, values; duplicates add up) of ``H`` with
    ``theta^T H theta = sum_f sum_o w_fo ||x'_o - m_f||^2`` over ``theta = [s, t]``.

    ``weights``: ``[T, C]`` per observation map. With ``r_o = sum_b A_ob x'_b`` (``A``
    centres a frame's observations), the form is ``sum_bc (A^T W A)_bc <x'_b, x'_c>`` and
    ``<x'_b, x'_c> = s_b s_c G_bc + s_b t_c S_b + t_b s_c S_c + t_b t_c P``.
    """
    count = np.maximum(st.mask.sum(1), 1)[:, None, None]
    a = np.eye(st.mask.shape[1])[None] * st.mask[:, :, None] - st.mask[:, :, None] * st.mask[:, None, :] / count
    coef = np.einsum("tob,to,toc->tbc", a, weights * st.mask, a)
    both = st.mask[:, :, None] & st.mask[:, None, :]
    rows = np.broadcast_to(st.ids[:, :, None], both.shape)[both]
    cols = np.broadcast_to(st.ids[:, None, :], both.shape)[both]
    c, k = coef[both], num_snippets
    values = np.concatenate([c * st.gram[both], c * np.broadcast_to(st.sums[:, :, None], both.shape)[both],
                             c * np.broadcast_to(st.sums[:, None, :], both.shape)[both], c * st.pixels])
    return (np.concatenate([rows, rows, rows + k, rows + k]), np.concatenate([cols, cols + k, cols, cols + k]),
            values)


class _BandedSystem:
    """``M = H(weights) + diag(diagonal)`` over ``theta = [s, t]`` (``H`` from
    ``_ls_entries``), Cholesky-factorized in LAPACK band storage.

    Unknowns are ordered by snippet start frame with ``s`` and ``t`` interleaved: snippets
    sharing a frame start at most ``max (L-1) d`` frames apart, so the half bandwidth is
    about ``2 * groups * max (L-1) d`` whatever the video length. The band is assembled
    ``block`` frames at a time and factorized in place. ``starts``: ``[K]`` start frame
    of each snippet.
    """

    def __init__(self, st: _FrameStats, weights: np.ndarray, diagonal: np.ndarray, starts: np.ndarray,
                 block: int = 2048):
        k = len(starts)
        rank = np.empty(k, dtype=np.int64)
        rank[np.argsort(starts, kind="stable")] = np.arange(k)
        self.position = np.concatenate([2 * rank, 2 * rank + 1])
        frame_rank = np.append(rank, 0)[st.ids]
        spread = np.where(st.mask, frame_rank, -1).max(1) - np.where(st.mask, frame_rank, k).min(1)
        band = 2 * int(spread.max(initial=0)) + 2
        ab = np.zeros((band, 2 * k), order="F")
        for f0 in range(0, len(st.ids), block):
            rows, cols, values = _ls_entries(st.frames(f0, f0 + block), weights[f0:f0 + block], k)
            r, c = self.position[rows], self.position[cols]
            lower = r >= c
            offset, c, values = (r - c)[lower], c[lower], values[lower]
            if c.size:  # add the block's entries to the band columns it touches
                lo, hi = int(c.min()), int(c.max()) + 1
                ab[:, lo:hi] += np.bincount((c - lo) * band + offset, weights=values,
                                            minlength=(hi - lo) * band).reshape(hi - lo, band).T
        ab[0, self.position] += diagonal
        self.factor = linalg.cholesky_banded(ab, lower=True, overwrite_ab=True, check_finite=False)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``M^-1 b`` for ``b`` ``[2K]``."""
        banded = np.empty_like(b)
        banded[self.position] = b
        return linalg.cho_solve_banded((self.factor, True), banded, check_finite=False)[self.position]


def _fast_start(obs: _Observations) -> tuple[np.ndarray, _BandedSystem]:
    """Closed-form least-squares start and the factorized preconditioner ``M``.

    The L1 term ``|r| / (a_f * norm)`` behaves like ``r^2 / (2 b a_f norm)`` near a
    residual spread ``b``; with ``b = _LS_SPREAD * a_f`` (``a_f`` of the raw maps) each map
    gets weight ``1 / (2 _LS_SPREAD a_f^2 norm)``: the data term's scale invariance is kept,
    so frames far from the camera count as much as near ones. ``M`` adds the regularizer's
    quadratic terms (``REG_SCALE/N_g s^2 + REG_SHIFT/N_g t^2``); the global scale, which the
    data term leaves free, is fixed by ``mean(s) = 1``: ``theta = K M^-1 c / (c^T M^-1 c)``,
    ``c`` selecting the scales. ``M`` approximates half the objective's Hessian.
    """
    g = obs.graph
    k = g.num_snippets
    st = _frame_stats(obs)
    norm = float(sum(g.lengths) * g.num_frames * obs.pixels)
    a = st.sums.sum(1) / (np.maximum(st.mask.sum(1), 1) * st.pixels)  # a_f at s = 1, t = 0 (maps are >= 0)
    weights = np.divide(1.0, 2.0 * _LS_SPREAD * a ** 2 * norm, out=np.zeros_like(a), where=a > 0)
    per = g.per_snippet()
    system = _BandedSystem(st, weights[:, None] * st.mask, np.concatenate([REG_SCALE * per, REG_SHIFT * per]),
                           np.concatenate([np.arange(n) for n in g.counts]))
    gauge = np.concatenate([np.ones(k), np.zeros(k)])
    theta = system.solve(gauge)
    return theta * (k / (gauge @ theta)), system


class _LBFGS:
    """L-BFGS with initial inverse Hessian ``precond(v)`` and Armijo backtracking.

    The curvature pairs persist across ``run`` calls, so a run on the coarse pixel level
    warms up the run on all pixels.
    """

    def __init__(self, precond: Callable[[np.ndarray], np.ndarray], memory: int = 8):
        self.precond, self.memory = precond, memory
        self.pairs: list[tuple[np.ndarray, np.ndarray, float]] = []

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        q, alphas = grad.copy(), []
        for sv, yv, rho in reversed(self.pairs):
            alphas.append(rho * (sv @ q))
            q -= alphas[-1] * yv
        r = self.precond(q)
        if self.pairs:
            sv, yv, _ = self.pairs[-1]
            r *= (sv @ yv) / (yv @ self.precond(yv))
        for (sv, yv, rho), alpha in zip(self.pairs, reversed(alphas)):
            r += sv * (alpha - rho * (yv @ r))
        return -r

    def run(self, fun: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray, max_iter: int,
            rtol: float) -> tuple[np.ndarray, float, list[float], int]:
        """Minimize ``fun(theta) -> (value, grad)`` until a step gains less than ``rtol``
        (relative), no step gains, or ``max_iter`` steps; returns (theta, value, history, steps)."""
        value, grad = fun(theta)
        history, steps = [value], 0
        while steps < max_iter:
            direction = self._direction(grad)
            slope = grad @ direction
            if slope >= 0:  # stale curvature: restart from the preconditioned gradient
                self.pairs, direction = [], -self.precond(grad)
                slope = grad @ direction
            step = 1.0
            for _ in range(12):
                new_value, new_grad = fun(theta + step * direction)
                if new_value <= value + 1e-4 * step * slope:
                    break
                step *= 0.25
            else:
                break
            steps += 1
            sv, yv = step * direction, new_grad - grad
            if sv @ yv > 0:
                self.pairs = (self.pairs + [(sv, yv, 1.0 / (sv @ yv))])[-self.memory:]
            theta, gain = theta + sv, value - new_value
            value, grad = new_value, new_grad
            history.append(value)
            if gain <= rtol * abs(value):
                break
        return theta, value, history, steps


def _fast(obs: _Observations, coarse: _Observations | None, w_d: float, max_iter: int,
          rtol: float) -> tuple[np.ndarray, float, list[float], int]:
    """Fast solver: least-squares start, L-BFGS on the coarse level (if any), then on all
    pixels, each stopped at ``rtol`` or when no step lowers the objective.
    Returns (theta ``[2K]``, objective, history, iterations)."""
    levels = [obs] if coarse is None else [coarse, obs]
    theta, system = _fast_start(levels[0])
    optimizer = _LBFGS(lambda v: 0.5 * system.solve(v))
    history: list[float] = []
    iterations = 0
    for level in levels:
        def fun(th: np.ndarray, level: _Observations = level):
            return _evaluate(level, th, w_d, "coupled")
        theta, value, level_history, steps = optimizer.run(fun, theta, max_iter - iterations, rtol)
        history += level_history
        iterations += steps
    return theta, value, history, iterations


_OPENBLAS_THREADS = (("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                     ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"))


def _openblas_thread_controls() -> list:
    """(set, get) thread-count functions of every OpenBLAS loaded in this process (numpy's
    and scipy's); empty where none is found (another BLAS, no ``/proc``)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        controls += [(getattr(lib, s), getattr(lib, g)) for s, g in _OPENBLAS_THREADS
                     if hasattr(lib, s) and hasattr(lib, g)][:1]
    return controls


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch intra-op and OpenBLAS threads, restoring the settings after.

    The solvers issue many short tensor and banded-LAPACK operations; on a busy machine
    every extra thread waits at each one's barrier (measured here: 15x slower with 2).
    """
    previous = torch.get_num_threads()
    blas = [(set_threads, get_threads()) for set_threads, get_threads in _openblas_thread_controls()]
    torch.set_num_threads(count)
    for set_threads, _ in blas:
        set_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        for set_threads, old in blas:
            set_threads(old)


def solve(samples: Sequence, dilations: Sequence[int], lengths: Sequence[int], num_frames: int, global_min: float,
          solver: str = "fast", memory_budget: int = 1 << 30, w_d: float = 1.0, max_iter: int | None = None,
          rtol: float = 1e-4, threads: int = 1) -> AlignResult:
    """Co-align snippets from their sampled maps.

    ``samples``: one ``[N_g, L_g, P_h, P_w]`` array-like per group (numpy, zarr: anything
    sliceable along axis 0), ``sample_pixels``-strided, raw (not min-shifted);
    ``global_min``: minimum over all full-resolution snippet maps (subtracted here);
    ``memory_budget``: bytes; samples that do not fit are re-read in chunks every pass.
    ``max_iter``: step cap (default: 2000 Adam steps for ``reference``, the published
    rule; 200 for ``fast``); ``rtol``: relative objective gain at which ``fast`` stops.
    ``threads``: torch and OpenBLAS threads during the solve (restored after): the solvers
    issue many short operations, which extra threads slow down on a busy machine.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown co-alignment solver {solver!r}; choose from {SOLVERS}")
    graph = _Graph(dilations, lengths, num_frames)
    obs = _Observations(samples, graph, global_min, memory_budget)
    with _threads(threads):
        if solver == "reference":
            theta, history = _reference(obs, w_d, ADAM_STEPS if max_iter is None else max_iter)
            value, iterations = _evaluate(obs, theta, w_d, None)[0], len(history)
        else:
            step = obs.pixels // _COARSE_PIXELS
            coarse = _Observations(samples, graph, global_min, memory_budget, pixel_step=step) if step > 1 else None
            theta, value, history, iterations = _fast(obs, coarse, w_d,
                                                      _FAST_MAX_ITER if max_iter is None else max_iter, rtol)
    k = graph.num_snippets
    return AlignResult(scales=graph.split(theta[:k]), shifts=graph.split(theta[k:]), global_min=float(global_min),
                       objective=float(value), iterations=int(iterations), loss_history=np.asarray(history, np.float64),
                       solver=solver)


def _array_min(x, max_bytes: int = 1 << 28) -> float:
    """Minimum of an array-like, read in slices along axis 0 of at most ``max_bytes``."""
    step = max(1, max_bytes // max(1, 4 * int(np.prod(x.shape[1:]))))
    return min(float(np.min(np.asarray(x[i:i + step]))) for i in range(0, x.shape[0], step))


def align(snippets: Sequence, dilations: Sequence[int], solver: str = "fast", **kwargs) -> AlignResult:
    """Co-align full-resolution snippets ``[N_g, L_g, H, W]`` (one array per dilation).

    Computes the global minimum and the SPEC samples, then calls ``solve`` with
    ``kwargs``. Raises ``ValueError`` when the groups imply different video lengths.
    """
    num_frames = frames_from_shapes([x.shape for x in snippets], dilations)
    global_min = min(_array_min(x) for x in snippets)
    samples = [sample_pixels(x) for x in snippets]
    return solve(samples, dilations, [x.shape[1] for x in snippets], num_frames, global_min, solver=solver, **kwargs)

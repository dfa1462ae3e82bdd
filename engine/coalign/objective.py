"""The SPEC co-alignment objective and its gradient, evaluated window by window.

Over min-shifted, sampled maps ``x`` with ``x' = s_k x + t_k``: per frame the L1 distance
of every observation to the frame mean, over the frame's mean absolute target, in inverse
depth and in depth (``1/clip(x')``), plus the scale/shift regularizer of the graph.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .graph import SnippetGraph
from .observations import Observations, Window

CLIP = 1e-3  # inverse depth is clipped below at CLIP before the reciprocal (depth space)
_Y_CLIPPED = float(1.0 / torch.tensor(CLIP, dtype=torch.float32))  # 1/clip(x') where x' is clipped


class Workspace:
    """Work tensors shared by the windows of a pass (fresh large tensors would page-fault)."""

    def __init__(self, cols: int, frames: int, pixels: int):
        size = cols * frames * pixels
        self.flat = [torch.empty(size, dtype=torch.float32) for _ in range(5)]

    def get(self, index: int, shape: torch.Size) -> torch.Tensor:
        """Work tensor ``index`` (0..4) viewed as ``shape``."""
        return self.flat[index][:shape.numel()].view(shape)


def safe_inverse(a: torch.Tensor) -> torch.Tensor:
    """``1/a`` where ``a > 0``, else 0: frames without observations or with an all-zero
    target contribute nothing (the published code would divide by zero there)."""
    return torch.where(a > 0, 1.0 / a, torch.zeros_like(a))


def window_terms(win: Window, sc: torch.Tensor, sh: torch.Tensor, w_d: float, grad: str | None,
                  work: Workspace) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """Data sum of one window (before the SPEC divisor) and its derivatives wrt ``s``, ``t``
    per observation (``[columns, F]``); ``sc``/``sh``: the observations' scale and shift."""
    x, mask, shape = win.x, win.mask, win.x.shape
    full = None if mask is None else mask[..., None]
    inv_count = (1.0 / win.count.clamp(min=1.0))[:, None]
    xp = torch.mul(x, sc[..., None], out=work.get(0, shape)).add_(sh[..., None])  # x' [C, F, P]
    m = xp.sum(0).mul_(inv_count)  # target m_f [F, P]
    ia = safe_inverse(m.abs().mean(1))  # 1 / a_f [F]
    r = torch.sub(xp, m, out=work.get(1, shape))
    e = torch.abs(r, out=work.get(2, shape)).sum(-1)  # sum_p |x' - m_f| [C, F]
    y = xp.clamp_(min=CLIP).reciprocal_()  # depth space
    if full is not None:
        e.mul_(mask)
        y.mul_(full)
    md = y.sum(0).mul_(inv_count)
    iad = safe_inverse(md.mean(1))  # md >= 0: mean |md| = mean md
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


def evaluate(obs: Observations, theta: np.ndarray, w_d: float, grad: str | None):
    """SPEC objective at ``theta = [s, t]`` (``[2K]``) and, unless ``grad`` is None, its
    gradient with the per-frame normalizers ``a_f``, ``ad_f`` held constant: ``"detached"``
    holds the targets ``m_f``, ``md_f`` constant too (the published gradient),
    ``"coupled"`` differentiates through them."""
    g = obs.graph
    k = g.num_snippets
    params = torch.from_numpy(np.insert(theta, [k, 2 * k], 0.0).astype(np.float32)).view(2, k + 1)
    derivs = torch.zeros(2, k + 1, dtype=torch.float64)
    work = Workspace(g.num_cols, obs.window, obs.pixels)
    total = 0.0
    for win in obs:
        value, d_s, d_t = window_terms(win, params[0][win.ids], params[1][win.ids], w_d, grad, work)
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
    obs = Observations(samples, SnippetGraph(dilations, lengths, num_frames), global_min, memory_budget)
    theta = np.concatenate([np.asarray(v, np.float64).ravel() for v in (*scales, *shifts)])
    return evaluate(obs, theta, w_d, None)[0]


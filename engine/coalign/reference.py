"""The published co-alignment solver: Adam on float32 scales and shifts (SPEC.md)."""

from __future__ import annotations

import numpy as np
import torch

from .objective import evaluate
from .observations import Observations

ADAM_LR, ADAM_BETAS, ADAM_STEPS = 1e-3, (0.5, 0.9), 2000


def adam(obs: Observations, w_d: float, steps: int) -> tuple[np.ndarray, list[float]]:
    """Published solver: Adam on float32 ``(s, t)`` from (1, 0) with targets and normalizers
    held constant in the gradient. Returns (theta ``[2K]``, objective before each step)."""
    k = obs.graph.num_snippets
    s = torch.ones(k, dtype=torch.float32, requires_grad=True)
    t = torch.zeros(k, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([s, t], lr=ADAM_LR, betas=ADAM_BETAS)
    history = []
    for _ in range(steps):
        value, grad = evaluate(obs, torch.cat([s, t]).detach().double().numpy(), w_d, "detached")
        history.append(value)
        s.grad, t.grad = torch.from_numpy(grad).float().view(2, k)
        optimizer.step()
    return torch.cat([s, t]).detach().double().numpy(), history

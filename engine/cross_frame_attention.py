"""Cross-frame attention installed as a diffusers attention processor (stock diffusers, no fork).

Self-attention layers (``attn1``) join the L frames of each snippet into one token
sequence, ``(b*L, hw, c) -> (b, L*hw, c)``; cross-attention (``attn2``) stays per frame.
The UNet is called with ``cross_attention_kwargs={"num_frames": L}``.
"""

from __future__ import annotations

import inspect

import torch

from ..kernels.attention import attention


class CrossFrameAttnProcessor:
    """Attention processor for SD2 transformer blocks; ``joint`` selects cross-frame joining."""

    def __init__(self, joint: bool, backend: str = "auto"):
        self.joint = joint
        self.backend = backend

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 num_frames: int = 1) -> torch.Tensor:
        """``hidden_states``: ``(b*L, hw, c)`` tokens; returns the same shape."""
        if attention_mask is not None:
            raise ValueError("cross-frame attention takes no attention mask")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        frames = num_frames if self.joint else 1
        out = attention(q, k, v, heads=attn.heads, frames=frames, scale=attn.scale, backend=self.backend)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


# diffusers' Attention.forward calls inspect.signature(processor.__call__) on every call to filter
# cross_attention_kwargs; a precomputed __signature__ makes that lookup cheap.
CrossFrameAttnProcessor.__call__.__signature__ = inspect.signature(CrossFrameAttnProcessor.__call__)


def install_cross_frame_attention(unet, backend: str = "auto") -> None:
    """Set joint processors on every ``attn1`` and per-frame ones on every ``attn2`` of ``unet``."""
    processors = {name: CrossFrameAttnProcessor(joint=name.endswith("attn1.processor"), backend=backend)
                  for name in unet.attn_processors}
    unet.set_attn_processor(processors)

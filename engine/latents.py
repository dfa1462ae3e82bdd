"""Frames <-> latents: resize and normalize RGB, VAE-encode to latents, VAE-decode depth.

Shapes: frames ``uint8 [B, H0, W0, 3]``; images ``float [B, 3, H, W]`` in [-1, 1];
latents ``[B, 4, H/8, W/8]`` already multiplied by the latent scale factor 0.18215.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LATENT_SCALE = 0.18215


def processing_size(height: int, width: int, res: int) -> tuple[int, int]:
    """SPEC resize rule: longer side -> ``res`` (0 keeps native), ``(int(H*s), int(W*s))``."""
    if res == 0:
        return height, width
    s = min(res / width, res / height)
    return int(height * s), int(width * s)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased, ``align_corners=False`` resize of ``[B, C, H, W]`` (no-op at same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def frames_to_images(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``uint8 [B, H0, W0, 3]`` -> float32 ``[B, 3, H, W]`` resized to ``size``, in [-1, 1]."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    return resize(x, size) / 255.0 * 2.0 - 1.0


@torch.no_grad()
def encode(vae, images: torch.Tensor) -> torch.Tensor:
    """VAE encoder -> quant_conv -> posterior mean (first 4 of 8 channels) -> x 0.18215."""
    moments = vae.quant_conv(vae.encoder(images)) if vae.quant_conv is not None else vae.encoder(images)
    return moments[:, :4] * LATENT_SCALE


@torch.no_grad()
def decode_depth(vae, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Depth latents ``[B, 4, h, w]`` -> float32 depth ``[B, H, W]`` (mean of 3 decoded channels).

    When the decoded map (8h x 8w) differs from ``size`` (frame sizes not divisible by 8)
    it is resized to ``size``.
    """
    z = latents / LATENT_SCALE
    z = vae.post_quant_conv(z) if vae.post_quant_conv is not None else z
    depth = vae.decoder(z).mean(dim=1, keepdim=True)
    if size is not None:
        depth = resize(depth.float(), size)
    return depth[:, 0].float()

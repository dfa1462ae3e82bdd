"""One DDIM step of the snippet UNet: shared by initial snippet inference and refinement.

Shapes: ``rgb`` and ``depth`` latents ``[B, L, 4, h, w]`` (B snippets of L frames).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from .model import Model


def initial_noise(model: Model, latent_size: tuple[int, int], seed: int) -> torch.Tensor:
    """The one noise ``[1, 4, h, w]`` every frame starts from, drawn once on the compute device."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return torch.randn((1, 4, *latent_size), generator=generator, device=model.device, dtype=model.dtype)


def make_scheduler(model: Model, num_steps: int) -> DDIMScheduler:
    """A fresh DDIM scheduler from the checkpoint's config with ``num_steps`` inference steps."""
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(num_steps, device=model.device)
    return scheduler


@torch.no_grad()
def denoise_step(model: Model, scheduler: DDIMScheduler, rgb: torch.Tensor, depth: torch.Tensor,
                 timestep: torch.Tensor, step_at: int | None = None) -> torch.Tensor:
    """Predict with cross-frame attention over each snippet and take one DDIM step.

    ``step_at``: ``timestep`` as a host int for the scheduler (its tables live on the host,
    so a device tensor there costs a synchronization per call). Returns the next depth
    latents ``[B, L, 4, h, w]`` in the compute dtype.
    """
    b, length = rgb.shape[:2]
    sample = depth.reshape(b * length, *depth.shape[2:]).to(model.dtype)
    unet_in = torch.cat([rgb.reshape(b * length, *rgb.shape[2:]).to(model.dtype), sample], dim=1)
    if model.device.type == "cuda":
        unet_in = unet_in.contiguous(memory_format=torch.channels_last)
    text = model.prompt_embedding.expand(b * length, -1, -1)
    t = timestep.expand(b * length)
    v = model.unet(unet_in, t, encoder_hidden_states=text, cross_attention_kwargs={"num_frames": length},
                   return_dict=False)[0]
    prev = scheduler.step(v, timestep if step_at is None else step_at, sample, return_dict=False)[0]
    return prev.reshape(b, length, *prev.shape[1:])

"""Frames <-> latents: resize and normalize RGB, VAE-encode to latents, VAE-decode depth.

Shapes: frames ``uint8 [B, H0, W0, 3]``; images ``float [B, 3, H, W]`` in [-1, 1];
latents ``[B, 4, h, w]`` already multiplied by the latent scale factor 0.18215.

The VAE works on sides that are multiples of 8. ``Geometry`` fixes how a frame meets it:
- ``pad`` (default): the frame is padded (edge pixels repeated) at the bottom and right up
  to the next multiple of 8, and every decoded map is cropped back to the frame, so depth
  covers the whole frame, pixel-aligned with it;
- ``authors`` (``--reproduce``): the frame goes in as is and the VAE's strided
  convolutions drop the last ``H mod 8`` rows and ``W mod 8`` columns, as in the published
  code: depth is ``8*floor(H/8) x 8*floor(W/8)``, the frame's top-left part.
Nothing is ever stretched: ``Geometry.covered`` is the part of the source frame the depth
shows, and pictures shown beside depth (``display_frame``) and depth resized back to the
source (``--restore-res``) use that part only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..storage.inputs.source import FULL_SCALE, CroppedView, FrameView, to_uint8

LATENT_SCALE = 0.18215
VAE_FACTOR = 8
GEOMETRIES = ("pad", "authors")


def processing_size(height: int, width: int, res: int) -> tuple[int, int]:
    """SPEC resize rule: longer side -> ``res`` (0 keeps native), ``(int(H*s), int(W*s))``."""
    if res == 0:
        return height, width
    s = min(res / width, res / height)
    return int(height * s), int(width * s)


@dataclass(frozen=True)
class Geometry:
    """Sizes (rows, columns) of one run's maps.

    ``frame``: the resized RGB frame; ``depth``: every depth map; ``latent``: every latent;
    ``mode``: ``pad`` or ``authors`` (module docstring).
    """

    frame: tuple[int, int]
    mode: str = "pad"

    @property
    def latent(self) -> tuple[int, int]:
        if self.mode == "pad":
            return tuple(-(-side // VAE_FACTOR) for side in self.frame)
        return tuple(side // VAE_FACTOR for side in self.frame)

    @property
    def depth(self) -> tuple[int, int]:
        if self.mode == "pad":
            return self.frame
        return tuple(VAE_FACTOR * side for side in self.latent)

    def to_vae(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images of ``frame`` or ``depth`` size, as the VAE encoder takes them."""
        if self.mode == "authors":
            return images
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % VAE_FACTOR, -w % VAE_FACTOR
        if not pad_h and not pad_w:
            return images
        return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")

    def covered(self, source: tuple[int, int]) -> tuple[int, int]:
        """``(rows, columns)`` of a ``source``-sized frame that depth shows, from its top-left corner:
        all of it for ``pad``; for ``authors`` the part the ``depth``-sized top-left crop of the
        resized ``frame`` came from (``depth / frame`` of each side, rounded: within half a source
        pixel). Depth resized to this size lies pixel on pixel over the source."""
        if self.depth == self.frame:
            return tuple(source)
        return tuple(max(1, round(s * d / f)) for s, d, f in zip(source, self.depth, self.frame))

    def from_vae(self, maps: torch.Tensor) -> torch.Tensor:
        """Decoded ``[..., 8h, 8w]`` maps cropped to ``depth`` (a no-op for ``authors``)."""
        h, w = self.depth
        return maps[..., :h, :w]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased, ``align_corners=False`` resize of ``[B, C, H, W]`` (no-op at same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


STRIP_VALUES = 1 << 20  # float32 values (4 MiB) of one strip of a large frame during its resize


def resize_frame(frame: FrameView, size: tuple[int, int]) -> torch.Tensor:
    """One ``[H0, W0, C]`` frame (any dtype, values kept) -> float32 ``[C, *size]``, like
    ``resize``. A large frame is read and resized in strips of rows, columns first: the same
    bytes as one ``resize`` of the whole frame (its antialiased bilinear filter is separable
    and runs along the columns first), with memory bounded by ``STRIP_VALUES`` whatever the
    source size (the whole frame is never read at once)."""
    h0, w0, c = frame.shape
    rows = max(2, STRIP_VALUES // (w0 * c) // 2 * 2)  # even: whole chroma rows of a 4:2:0 video frame
    if h0 <= rows or w0 == size[1]:
        return resize(image_tensor(frame.array()), size)[0]
    columns = torch.empty(1, c, h0, size[1])  # allocated first: the strips' buffers are freed around it, not under it
    for a in range(0, h0, rows):
        columns[:, :, a:a + rows] = resize(image_tensor(frame.rows(a, min(a + rows, h0))), (min(rows, h0 - a), size[1]))
    return resize(columns, size)[0]


def display_frame(frame: FrameView, size: tuple[int, int], covered: tuple[int, int] | None = None) -> np.ndarray:
    """``uint8 [*size, 3]`` of a frame for showing it (contact sheets, side-by-side videos,
    point colours): ``resize_frame`` rounded to 0-255, so read in bands like it. ``covered``:
    only the frame's top-left rows x columns that depth shows (``Geometry.covered``)."""
    if covered is not None and tuple(covered) != tuple(frame.shape[:2]):
        frame = CroppedView(frame, *covered)
    if tuple(frame.shape[:2]) == tuple(size):
        return to_uint8(frame.array())
    rgb = resize_frame(frame, size).permute(1, 2, 0).numpy()
    return to_uint8(rgb / FULL_SCALE.get(frame.dtype, 1.0))


def image_tensor(rows: np.ndarray) -> torch.Tensor:
    """``[H, W, C]`` array -> float32 ``[1, C, H, W]``, contiguous (one copy)."""
    return torch.from_numpy(rows).permute(2, 0, 1)[None].to(torch.float32, memory_format=torch.contiguous_format)


@torch.no_grad()
def encode(vae, images: torch.Tensor) -> torch.Tensor:
    """VAE encoder -> quant_conv -> posterior mean (first 4 of 8 channels) -> x 0.18215."""
    moments = vae.quant_conv(vae.encoder(images)) if vae.quant_conv is not None else vae.encoder(images)
    return moments[:, :4] * LATENT_SCALE


@torch.no_grad()
def decode_depth(vae, latents: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Depth latents ``[B, 4, h, w]`` -> depth ``[B, *geometry.depth]`` (mean of the 3 decoded
    channels) in the latents' dtype."""
    z = latents / LATENT_SCALE
    z = vae.post_quant_conv(z) if vae.post_quant_conv is not None else z
    return geometry.from_vae(vae.decoder(z).mean(dim=1))

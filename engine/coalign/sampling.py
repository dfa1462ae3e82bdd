"""The SPEC sample grid of a depth map and the video length a set of snippet groups implies."""

from __future__ import annotations

from typing import Sequence

BORDER = 2  # pixels cropped at each border before sampling
STRIDE = 10  # keep every STRIDE-th pixel of the cropped map


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



"""Frame sizes that are not multiples of 8: depth stays pixel-aligned with the frame and covers it.

The alignment check uses a VAE whose weights are set by hand so that it reconstructs its
input (encoder: 2x2 average pooling three times; decoder: nearest upsampling; everything
else an identity up to a per-channel affine map). A random VAE reconstructs nothing, so
only a reconstructing one can show where an edge comes back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from rdengine.engine.latents import Geometry, decode_depth, encode
from rdengine.engine.stages.ingest import prepare_frame
from rdengine.storage.inputs import ArrayView

CHANNELS = 8


def box_vae() -> AutoencoderKL:
    """A reconstructing SD-layout VAE: ``decode(encode(x))`` = per-channel affine of
    ``nearest_up8(avg_pool8(x))`` on the red channel (every output channel copies it)."""
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(CHANNELS,) * 4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=CHANNELS)
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()

        def copy(conv, pairs, tap=(1, 1)):
            for out_c, in_c in pairs:
                conv.weight[out_c, in_c, tap[0], tap[1]] = 1.0

        for module in vae.modules():  # resnets and attention add zero to their residual path
            if module.__class__.__name__ == "ResnetBlock2D":
                for norm in (module.norm1, module.norm2):
                    norm.weight.fill_(1.0)
            if module.__class__.__name__ == "Attention":
                module.group_norm.weight.fill_(1.0)
        for norm in (vae.encoder.conv_norm_out, vae.decoder.conv_norm_out):
            norm.weight.fill_(1.0)
            norm.bias.fill_(10.0)  # SiLU(z + 10) = z + 10 to 5e-4: the norm-act-conv tail stays affine
        copy(vae.encoder.conv_in, [(c, c) for c in range(3)])
        for block in vae.encoder.down_blocks:
            for down in block.downsamplers or []:
                down.conv.weight[:, :, :2, :2] = torch.eye(CHANNELS)[:, :, None, None] * 0.25  # 2x2 mean
        copy(vae.encoder.conv_out, [(c, c) for c in range(4)])
        vae.quant_conv.weight[:, :, 0, 0] = torch.eye(8)
        vae.post_quant_conv.weight[:, :, 0, 0] = torch.eye(4)
        copy(vae.decoder.conv_in, [(c, c) for c in range(4)])
        for block in vae.decoder.up_blocks:
            for up in block.upsamplers or []:
                copy(up.conv, [(c, c) for c in range(CHANNELS)])
        copy(vae.decoder.conv_out, [(o, 0) for o in range(3)])
    return vae.eval()


def edge_position(profile: np.ndarray, window: slice, dark: float, bright: float) -> float:
    """Where a dark-to-bright step lies in ``profile[window]``: ``window.start`` plus the dark
    mass, ``sum(1 - v)`` with ``v`` scaled 0 (dark) .. 1 (bright). Block averaging and nearest
    upsampling keep this mass, so a pixel-aligned path returns the true edge."""
    v = (profile[window] - dark) / (bright - dark)
    return window.start + float(np.sum(1.0 - v))


def reconstruct(vae, frame: np.ndarray, geometry: Geometry) -> np.ndarray:
    images = geometry.to_vae(prepare_frame(ArrayView(frame), frame.shape[:2], geometry.frame)[None])
    return decode_depth(vae, encode(vae, images), geometry)[0].numpy()


def step_frame(height: int, width: int, row: int | None = None, column: int | None = None) -> np.ndarray:
    frame = np.full((height, width, 3), 40, np.uint8)
    if row is not None:
        frame[row:] = 220
    if column is not None:
        frame[:, column:] = 220
    return frame


@pytest.fixture(scope="module")
def vae():
    return box_vae()


@pytest.mark.parametrize("row,window", [(60, slice(48, 80)), (80, slice(72, 85))])
def test_padded_path_keeps_a_horizontal_edge_on_its_row(vae, row, window):
    """Rows 24-39 are a bright band (the bright level), then dark until the edge at ``row``;
    rows 80-84 are the last block, which padding completes and the crop keeps (the authors'
    geometry drops them)."""
    geometry = Geometry((85, 128), "pad")  # 85 rows: padded to 88 for the VAE, cropped back to 85
    frame = step_frame(85, 128, row=row)
    frame[24:40] = 220
    depth = reconstruct(vae, frame, geometry)
    assert depth.shape == (85, 128)
    column = depth[:, 64]
    dark, bright = column[:16].mean(), column[24:40].mean()
    assert abs(edge_position(column, window, dark, bright) - row) < 1.0


def test_padded_path_keeps_a_vertical_edge_on_its_column(vae):
    geometry = Geometry((48, 101), "pad")  # 101 columns: padded to 104
    depth = reconstruct(vae, step_frame(48, 101, column=45), geometry)
    assert depth.shape == (48, 101)
    row = depth[24]
    assert abs(edge_position(row, slice(32, 64), row[:24].mean(), row[-1]) - 45) < 1.0


def test_stretching_the_decoded_map_would_move_the_edge(vae):
    """The check has teeth: the old path (decode 88 rows, resize to 85) misplaces the edge by 2 rows."""
    from rdengine.engine.latents import resize

    geometry = Geometry((85, 128), "pad")
    frame = step_frame(85, 128, row=60)
    full = decode_depth(vae, encode(vae, geometry.to_vae(prepare_frame(ArrayView(frame), (85, 128), (85, 128))[None])),
                        Geometry((88, 128), "pad"))
    stretched = resize(full[:, None], (85, 128))[0, 0].numpy()[:, 64]
    assert abs(edge_position(stretched, slice(40, 80), stretched[:32].mean(), stretched[-1]) - 60) > 1.5


def test_authors_geometry_is_their_top_left_crop(vae):
    geometry = Geometry((85, 128), "authors")
    assert geometry.latent == (10, 16) and geometry.depth == (80, 128)
    depth = reconstruct(vae, step_frame(85, 128, row=60), geometry)
    assert depth.shape == (80, 128)  # the VAE drops the last 5 rows, as in the published code
    column = depth[:, 64]
    assert abs(edge_position(column, slice(40, 80), column[:32].mean(), column[-1]) - 60) < 1.0


@pytest.mark.parametrize("frame,latent", [((85, 128), (11, 16)), ((431, 768), (54, 96)), ((64, 48), (8, 6)),
                                          ((8, 13), (1, 2))])
def test_pad_geometry_sizes(frame, latent):
    geometry = Geometry(frame, "pad")
    assert geometry.latent == latent and geometry.depth == frame
    x = torch.arange(frame[0] * frame[1], dtype=torch.float32).reshape(1, 1, *frame)
    padded = geometry.to_vae(x)
    assert padded.shape[-2:] == (8 * latent[0], 8 * latent[1])
    assert torch.equal(padded[..., :frame[0], :frame[1]], x)  # the frame itself is untouched
    assert torch.equal(padded[..., -1, :frame[1]], x[..., -1, :])  # padding repeats the edge
    assert torch.equal(geometry.from_vae(padded), x)

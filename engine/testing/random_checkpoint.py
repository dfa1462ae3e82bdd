"""Random-weight checkpoints in the real RollingDepth layout (for tests, demos and timing).

``tiny`` keeps every class, the scheduler config and the latent factor 8 of the real
checkpoint with a few channels; ``full`` has the SD2 sizes (timing without a download).
The depth such a checkpoint predicts is meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True,
    steps_offset=1, set_alpha_to_one=False, clip_sample=False,
)

MODEL_INDEX = {
    "_class_name": "RollingDepthPipeline",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

SIZES = {
    "tiny": dict(
        unet=dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=(2, 4),
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
                  cross_attention_dim=32, sample_size=32),
        vae=dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=256),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  projection_dim=32),
    ),
    "full": dict(
        unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20, 20),
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32,
                  cross_attention_dim=1024, sample_size=96),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=768),
        text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  projection_dim=512),
    ),
}


def build_unet(size: str) -> UNet2DConditionModel:
    """SD2-shaped depth UNet: 8 input channels (RGB latent + depth latent), 4 output channels."""
    return UNet2DConditionModel(in_channels=8, out_channels=4, use_linear_projection=True, **SIZES[size]["unet"])


def build_vae(size: str) -> AutoencoderKL:
    """SD2-shaped VAE: four levels (spatial factor 8), 4 latent channels, scale 0.18215."""
    blocks = len(SIZES[size]["vae"]["block_out_channels"])
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                         down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, **SIZES[size]["vae"])


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def write_text_parts(path: Path, size: str) -> None:
    """Write a byte-level CLIP tokenizer (no merges) and a random CLIP text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    chars = _byte_alphabet()
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tok_dir = path / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="CLIPTokenizer", model_max_length=77, bos_token="<|startoftext|>",
        eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")))
    config = CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=bos,
                            eos_token_id=eos, pad_token_id=eos, **SIZES[size]["text"])
    CLIPTextModel(config).save_pretrained(path / "text_encoder")


def write_random_checkpoint(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight checkpoint of ``size`` ('tiny' or 'full') to folder ``path``."""
    if size not in SIZES:
        raise ValueError(f"unknown checkpoint size '{size}' (choose from {', '.join(SIZES)})")
    from ..model import silence_library_progress

    silence_library_progress()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    build_unet(size).save_pretrained(path / "unet")
    build_vae(size).save_pretrained(path / "vae")
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(path / "scheduler")
    write_text_parts(path, size)
    (path / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return path

"""One full UNet step on a batch of L=3 snippets, cross-frame attention by SDPA vs the Triton kernel.

The UNet is the full-size SD2 depth UNet with random weights (``engine.testing.random_checkpoint``:
8 input channels, SD2 blocks and heads), channels-last on CUDA as the engine runs it, with the
engine's processors (``install_cross_frame_attention``) switched between backends.  Input:
``snippets * 3`` frames of latents at the chosen resolution (768x432 -> 54x96), t = 999, the
2-token text embedding.  Reports ms per step, frames/s and the output difference to SDPA.

    python -m rdengine.benchmarks.unet_step                         # CUDA, fp16, 768x432, 2 snippets
    python -m rdengine.benchmarks.unet_step --res 1024x576 --dtype bf16 --snippets 4 --json step.json
    python -m rdengine.benchmarks.unet_step --tiny                  # CPU smoke run, sdpa only
    python -m rdengine.benchmarks.unet_step --tiny --interpret      # ... and triton, interpreted

``--tiny`` uses the tiny random UNet on an 8x12 latent in fp32 on CPU.  Without ``--tiny`` a CUDA
GPU is required (status 2 otherwise).  ``--interpret`` restarts under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..engine.cross_frame_attention import install_cross_frame_attention
from ..engine.testing.random_checkpoint import build_unet
from ..kernels.attention import resolve_backend
from .kernel_attention import DTYPES, FRAMES, RESOLUTIONS, TEXT_TOKENS, ensure_interpreter, time_ms, write_rows

TINY_LATENT = (8, 12)


def step_inputs(unet, snippets: int, latent: tuple[int, int], device: torch.device,
                dtype: torch.dtype) -> dict:
    """UNet keyword inputs for ``snippets`` snippets of FRAMES frames (random latents, t=999)."""
    rows = snippets * FRAMES
    return dict(sample=torch.randn(rows, unet.config.in_channels, *latent, device=device, dtype=dtype),
                timestep=torch.full((rows,), 999, device=device),
                encoder_hidden_states=torch.randn(1, TEXT_TOKENS, unet.config.cross_attention_dim, device=device,
                                                  dtype=dtype).expand(rows, -1, -1),
                cross_attention_kwargs={"num_frames": FRAMES})


def run(size: str, backends: list[str], snippets: int, latent: tuple[int, int], device: torch.device,
        dtype: torch.dtype, reps: int) -> list[dict]:
    """Time one UNet step per backend; returns one row per backend (ms, frames/s, diff to the first)."""
    torch.manual_seed(0)
    unet = build_unet(size).eval().requires_grad_(False)
    # nn.Module's own cast: diffusers' `to` warns about fp32-only modules even when there are none
    torch.nn.Module.to(unet, device=device, dtype=dtype)
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    inputs = step_inputs(unet, snippets, latent, device, dtype)
    rows, first = [], None
    for backend in backends:
        install_cross_frame_attention(unet, backend)
        with torch.inference_mode():
            out = unet(**inputs).sample.float()
            ms = time_ms(lambda: unet(**inputs), device, reps)
        first = out if first is None else first
        row = dict(backend=backend, unet=size, latent=f"{latent[0]}x{latent[1]}", snippets=snippets,
                   dtype=str(dtype).removeprefix("torch."), ms_per_step=ms, frames_per_s=snippets * FRAMES / ms * 1e3,
                   speedup=rows[0]["ms_per_step"] / ms if rows else 1.0,
                   max_abs_diff_vs_first=(out - first).abs().max().item())
        rows.append(row)
        print(f"{backend:<7} {size} latent {row['latent']} x {snippets * FRAMES} frames {row['dtype']}: "
              f"{ms:9.2f} ms/step  {row['frames_per_s']:8.2f} frames/s  {row['speedup']:5.2f}x  "
              f"max|out - {backends[0]}| {row['max_abs_diff_vs_first']:.2e}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (--tiny: cpu)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp16")
    parser.add_argument("--res", choices=list(RESOLUTIONS), default="768x432")
    parser.add_argument("--snippets", type=int, default=2, help="snippets per UNet batch (frames = 3x)")
    parser.add_argument("--backends", nargs="+", choices=["sdpa", "triton"], default=["sdpa", "triton"])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="tiny UNet, 8x12 latent, fp32 on CPU (smoke run)")
    parser.add_argument("--interpret", action="store_true", help="with --tiny: also run triton, interpreted")
    parser.add_argument("--json", help="also write the result rows to this JSON file")
    args = parser.parse_args(argv)
    if args.interpret:
        ensure_interpreter(__spec__.name)
    if args.tiny:
        device, dtype, latent, reps = torch.device("cpu"), torch.float32, TINY_LATENT, min(args.reps, 2)
        backends = args.backends if args.interpret else [b for b in args.backends if b != "triton"]
    else:
        if not torch.cuda.is_available():
            print("unet_step: the full-size step needs a CUDA GPU, and there is none here "
                  "(for a CPU smoke run use --tiny [--interpret])", file=sys.stderr)
            return 2
        device, dtype, latent, reps = torch.device(args.device), DTYPES[args.dtype], RESOLUTIONS[args.res], args.reps
        backends = args.backends
    for backend in backends:
        resolve_backend(backend, device, dtype)
    rows = run("tiny" if args.tiny else "full", backends, args.snippets, latent, device, dtype, reps)
    if args.json:
        write_rows(args.json, device, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

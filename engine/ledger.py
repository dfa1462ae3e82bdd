"""The device-work ledger: UNet passes, VAE encodes and VAE decodes per video frame, stage by stage,
and what they cost on the published architecture.

Counts come from the run's unit records: every task records the frames it sent through the
UNet (one snippet frame of one step), the VAE encoder and the VAE decoder. FLOPs are those of
the real model (SD2 UNet with 8 input channels and cross-frame attention over the snippet,
the SD VAE) at the run's size, counted once by torch's ``FlopCounterMode`` on the ``meta``
device: no weights, no arithmetic, whatever checkpoint ran (the tiny test model too). A
multiply-add counts as two FLOPs. ``PEAKS``: dense fp16 tensor throughput of common GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import layout
from ..storage.run_store import RunStore

PEAKS = {"A100": 312.0, "H100/H200": 989.0, "L40S": 362.0, "RTX 4090": 165.0}  # TFLOP/s, dense fp16 tensor
WORK = ("unet", "encode", "decode")
SNIPPET_DECODERS = (layout.SNIPPETS, layout.MERGE)  # stages that decode snippet frames


@dataclass(frozen=True)
class ArchitectureFlops:
    """TFLOP of the real architecture: one frame through the UNet inside a snippet of ``length``
    frames, one VAE decode and one VAE encode, at latent size ``latent`` (rows, columns)."""

    latent: tuple[int, int]
    length: int
    unet: float
    decode: float
    encode: float


def device_peak(name: str) -> float | None:
    """The ``PEAKS`` entry of a GPU's name (``torch.cuda.get_device_name``), if any."""
    for key, tflops in PEAKS.items():
        if any(part in name for part in key.replace("RTX ", "").split("/")):
            return tflops
    return None


def count_flops(latent: tuple[int, int], length: int = 3) -> ArchitectureFlops:
    """Count the real architecture's FLOPs on the meta device (a few seconds on a CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .cross_frame_attention import install_cross_frame_attention
    from .testing.random_checkpoint import build_unet, build_vae

    h, w = latent
    with torch.device("meta"):
        unet, vae = build_unet("full"), build_vae("full")
        install_cross_frame_attention(unet, backend="sdpa")
        inputs = torch.empty(length, 8, h, w), torch.empty(length), torch.empty(length, 2, 1024)
        latents, image = torch.empty(1, 4, h, w), torch.empty(1, 3, 8 * h, 8 * w)
        counts = []
        for run in (lambda: unet(*inputs[:2], encoder_hidden_states=inputs[2],
                                 cross_attention_kwargs={"num_frames": length}),
                    lambda: vae.decoder(vae.post_quant_conv(latents)),
                    lambda: vae.quant_conv(vae.encoder(image))):
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                run()
            counts.append(counter.get_total_flops() / 1e12)
    return ArchitectureFlops(tuple(latent), length, counts[0] / length, counts[1], counts[2])


def recorded_work(store: RunStore) -> dict[str, dict[str, int]]:
    """Per stage: the frames its recorded units sent through ``unet``, ``encode`` and ``decode``."""
    work: dict[str, dict[str, int]] = {}
    for stage in store.stages():
        for record in store.done_units(stage).values():
            for part, n in record.get("work", {}).items():
                work.setdefault(stage, dict.fromkeys(WORK, 0))[part] += n
    return work


def ledger(work: dict[str, dict[str, int]], frames: int, snippet_frames: int, flops: ArchitectureFlops) -> dict:
    """Per stage and in all: passes per video frame and TFLOP per video frame; the decodes per
    snippet frame (1.00: the method's count; 2.00: latent scratch decoded again at merge)."""
    rows = {}
    for stage, counts in work.items():
        per_frame = {part: counts[part] / frames for part in WORK}
        rows[stage] = {**per_frame, "tflop": sum(per_frame[part] * getattr(flops, part) for part in WORK)}
    total = {part: sum(row[part] for row in rows.values()) for part in (*WORK, "tflop")}
    decodes = sum(work.get(stage, {}).get("decode", 0) for stage in SNIPPET_DECODERS)
    return {"stages": rows, "total": total, "decodes_per_snippet_frame": decodes / max(1, snippet_frames),
            "flops": flops.__dict__}


def format_ledger(report: dict, frames: int, peak: float | None = None, achieved_seconds: float | None = None) -> str:
    """The ledger as text: a row per stage, the total, and the time that work needs at each peak."""
    f = report["flops"]
    lines = [f"device work per video frame (real architecture at latent {f['latent'][0]}x{f['latent'][1]}: UNet "
             f"{f['unet']:.3f} TFLOP per frame of a {f['length']}-frame snippet, VAE decode {f['decode']:.3f}, "
             f"encode {f['encode']:.3f})",
             f"  {'stage':<14} {'UNet':>7} {'encode':>7} {'decode':>7} {'TFLOP':>8}"]
    for stage, row in [*report["stages"].items(), ("total", report["total"])]:
        lines.append(f"  {stage:<14} {row['unet']:>7.2f} {row['encode']:>7.2f} {row['decode']:>7.2f} "
                     f"{row['tflop']:>8.2f}")
    lines.append(f"  VAE decodes per snippet frame: {report['decodes_per_snippet_frame']:.2f} (the method: 1.00)")
    total = report["total"]["tflop"] * frames
    peaks = dict(PEAKS) if peak is None else {"given": peak, **PEAKS}
    lines.append("  at peak: " + ", ".join(f"{name} {total / tflops:.1f} s" for name, tflops in peaks.items())
                 + f" for these {frames} frames")
    if achieved_seconds and peak:
        lines.append(f"  achieved: {total / achieved_seconds:.1f} TFLOP/s = {total / achieved_seconds / peak:.1%} "
                     f"of {peak:g}")
    return "\n".join(lines)

"""Pipeline benchmark: per-stage wall time, throughput, memory and achieved UNet TFLOP/s.

``rdengine bench [VIDEO]`` runs the whole pipeline (on a synthetic clip when no video is
given) ``--repeat`` times with one loaded model and reports, per stage, the mean and min
wall time, items/s (frames/s; snippets/s for the snippet stage) and share of the total;
the process's peak RSS; the peak GPU memory (``torch.cuda.max_memory_allocated``; "n/a"
on CPU); and for the UNet an achieved-TFLOP/s estimate.

UNet FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counts one UNet call of one
snippet on the run's actual shapes (attention through SDPA so it is counted), multiplied
by the number of snippets. The worker's ``DeviceTimer`` (``engine.stages.snippets``) times the
UNet step and the VAE decode of every batch separately (CUDA events on the GPU, so no
extra synchronization while the stage runs), so ``unet_tflops`` divides by UNet time
only; ``unet_tflops_stage`` divides by the whole snippet stage (prefetch, decode and
write-back included) and is the pessimistic figure. ``device_busy`` = (UNet + decode
time) / snippet-stage wall time: how well prefetch and write-back overlap compute.

Stages of the shot phase run side by side, shot after shot: a stage's seconds are the time
it worked (``working_seconds``), not the wall time from its start to its end.

The device-work ledger (``engine.ledger``) gives, per stage, the UNet passes, VAE encodes and
decodes per video frame and their TFLOP on the real architecture at the run's size, with the
time that work needs at a device's peak (``--peak-tflops``, and a table of common GPUs); on
a GPU it also gives the achieved fraction of the peak.

Models: ``tiny`` (random tiny checkpoint, cached), ``full-random`` (the SD2-size UNet and
VAE with random weights, built in memory: the real architecture's cost without a
download; its depth is meaningless) or a checkpoint folder / hub id.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..engine.config import ExecutionOptions, resolve_config
from ..engine.facts import RunFacts
from ..engine.ledger import count_flops, device_peak, format_ledger, ledger, recorded_work
from ..engine.model import TORCH_DTYPES, Model, load_model, resolve_device
from ..engine.stages.snippets import STAGE as SNIPPET_STAGE, DeviceTimer
from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..storage.run_store import RunStore
from ..engine.testing.synthetic_clip import write_clip

CACHE = Path(os.environ.get("RDENGINE_BENCH_CACHE", Path(tempfile.gettempdir()) / "rdengine-bench"))
MODELS = ("tiny", "full-random")


def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


def tiny_checkpoint() -> Path:
    """The tiny random checkpoint, written once into the bench cache."""
    path = cache_dir() / "tiny-checkpoint"
    if not (path / "model_index.json").exists():
        write_random_checkpoint(path, size="tiny", seed=0)
    return path


def full_random_model(device: torch.device, dtype: torch.dtype, attention: str = "auto") -> Model:
    """SD2-size UNet + VAE with random weights, built in memory (no 3.5 GB checkpoint on disk)."""
    from diffusers import DDIMScheduler

    from ..engine.cross_frame_attention import install_cross_frame_attention
    from ..engine.testing.random_checkpoint import SCHEDULER_CONFIG, SIZES, build_unet, build_vae

    from diffusers.utils import logging as diffusers_logging

    torch.manual_seed(0)
    unet, vae = build_unet("full"), build_vae("full")
    install_cross_frame_attention(unet, backend=attention)
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # no "modules to keep in float32" note: there are none
    try:
        unet.to(device, dtype).eval().requires_grad_(False)
        vae.to(device, dtype).eval().requires_grad_(False)
    finally:
        diffusers_logging.set_verbosity(level)
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    # The empty-prompt embedding's shape (1, 2, 1024); its values do not change the cost.
    embedding = torch.randn(1, 2, SIZES["full"]["text"]["hidden_size"]).to(device, dtype)
    return Model(unet=unet, vae=vae, scheduler=DDIMScheduler(**SCHEDULER_CONFIG), prompt_embedding=embedding,
                 native_embedding=embedding, identity={"random": "full", "seed": 0},
                 device=device, dtype=dtype, checkpoint="full-random")


def bench_model(name: str, device: str, dtype: str, attention: str = "auto") -> Model:
    """``tiny`` | ``full-random`` | checkpoint folder or hub id -> a loaded Model."""
    if name == "full-random":
        return full_random_model(resolve_device(device), TORCH_DTYPES[dtype], attention)
    checkpoint = str(tiny_checkpoint()) if name == "tiny" else name
    return load_model(checkpoint, device, dtype, attention)


def unet_flops_per_snippet(model: Model, length: int, latent_size: tuple[int, int]) -> int:
    """FLOPs of one UNet call on one snippet of ``length`` frames (attention counted via SDPA)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {}
    cpu_op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_op is not None:  # the CPU SDPA kernel has no flop formula registered
        mapping[cpu_op] = cpu_sdpa_flops
    processors = model.unet.attn_processors.values()
    backends = [p.backend for p in processors]
    for p in processors:  # a Triton kernel is invisible to the counter; SDPA does the same math
        p.backend = "sdpa"
    try:
        x = torch.zeros(length, 8, *latent_size, device=model.device, dtype=model.dtype)
        t = torch.full((length,), 999, device=model.device)
        text = model.prompt_embedding.expand(length, -1, -1)
        with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model.unet(x, t, encoder_hidden_states=text, cross_attention_kwargs={"num_frames": length},
                       return_dict=False)
        return int(counter.get_total_flops())
    finally:
        for p, b in zip(processors, backends):
            p.backend = b


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def machine() -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0]}
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values)}


def run(video: str | None = None, *, preset: str = "fast", frames: int | None = None, res: int | None = None,
        batch_size: int | None = None, repeat: int = 1, model: str = "tiny", device: str = "auto",
        dtype: str | None = None, attention: str = "auto", clip_size: tuple[int, int] | None = None,
        threads: int | None = None, workdir: str | Path | None = None, quiet: bool = True,
        peak_tflops: float | None = None) -> dict:
    """Run the pipeline ``repeat`` times and return the report (see the module docstring).

    Without ``video`` a synthetic clip of ``frames`` frames (default 250) and ``clip_size``
    (W, H; default 768x432 on CUDA, 128x96 on CPU) is written; ``res`` then defaults to
    the clip's longer side. On CPU a preset's fp16 computes in fp32 (as the CLI does).
    """
    from ..engine.pipeline import process_video

    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if peak_tflops is None and dev.type == "cuda":
        peak_tflops = device_peak(torch.cuda.get_device_name(dev))
    if dtype is None:
        from ..engine.config import PRESETS

        dtype = "fp32" if dev.type == "cpu" and PRESETS[preset]["dtype"] == "fp16" else PRESETS[preset]["dtype"]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rdengine-bench-") as tmp:
        tmp = Path(tmp)
        if video is None:
            width, height = clip_size or ((768, 432) if dev.type == "cuda" else (128, 96))
            count = frames or 250
            video = str(write_clip(tmp / f"synthetic{count}.mp4", frames=count, width=width, height=height, fps=25))
            res = max(width, height) if res is None else res
            source = f"synthetic {width}x{height}, {count} frames"
            frames = None
        else:
            source = str(video)
        loaded = time.perf_counter()
        net = bench_model(model, str(dev), dtype, attention)
        load_seconds = time.perf_counter() - loaded
        cfg = resolve_config(preset, res=res, dtype=dtype, frames=frames, checkpoint=net.checkpoint)
        opts = ExecutionOptions(device=str(dev), batch_size=batch_size, attention=attention, save=("npy",),
                                progress="quiet" if quiet else "auto", overwrite=True)
        runs = []
        for i in range(repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            timer = DeviceTimer(dev)
            result = process_video(video, tmp / "out", cfg, opts, model=net, device_timer=timer)
            store = RunStore(result.store, mode="r")
            facts = RunFacts.read(store)
            runs.append({"seconds": result.seconds, "stages": result.stages, "num_frames": result.num_frames,
                         "unet_seconds": timer.seconds("unet"), "decode_seconds": timer.seconds("decode"),
                         "batches": timer.batches, "batch_size": facts.plan.batch_size, "size": list(facts.depth_size),
                         "latent": list(facts.latent_size), "work": recorded_work(store),
                         "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None})
        flops = {}
        for _, length, h, w in runs[0]["batches"]:
            if length not in flops:
                flops[length] = unet_flops_per_snippet(net, length, (h, w))
    report = build_report(runs, flops, dict(source=source, preset=preset, model=model, device=str(dev), dtype=dtype,
                                            res=cfg.res, repeat=repeat, attention=attention,
                                            model_load_seconds=load_seconds, peak_tflops=peak_tflops))
    work = runs[0]["work"]
    report["ledger"] = ledger(work, runs[0]["num_frames"], work.get(SNIPPET_STAGE, {}).get("unet", 0),
                              count_flops(tuple(runs[0]["latent"]), cfg.snippet_lens[0]))
    return report


def build_report(runs: list[dict], flops_per_snippet: dict[int, int], config: dict) -> dict:
    """Mean/min over repeats of every stage and figure."""
    names = [s["name"] for s in runs[0]["stages"] if s["unit"] != "shots"]  # a count of shots, not a stage
    totals = [r["seconds"] for r in runs]
    mean_total = statistics.fmean(totals)
    stages = []
    for name in names:
        secs = [next(s for s in r["stages"] if s["name"] == name)["working_seconds"] for r in runs]
        first = next(s for s in runs[0]["stages"] if s["name"] == name)
        items = first["computed"]
        stages.append({"stage": name, "seconds": _summary(secs), "items": items, "unit": first["unit"],
                       "rate": items / max(statistics.fmean(secs), 1e-9),
                       "rate_best": items / max(min(secs), 1e-9),
                       "share": statistics.fmean(secs) / mean_total})
    snippet = next(s for s in stages if s["stage"] == SNIPPET_STAGE)
    snippets = sum(b for b, *_ in runs[0]["batches"])
    total_flops = sum(b * flops_per_snippet[length] for b, length, *_ in runs[0]["batches"])
    unet = _summary([r["unet_seconds"] for r in runs])
    decode = _summary([r["decode_seconds"] for r in runs])
    stage_mean = snippet["seconds"]["mean"]
    gpu = [r["peak_gpu_mib"] for r in runs if r["peak_gpu_mib"] is not None]
    return {
        "config": {**config, "batch_size": runs[0]["batch_size"], "frames": runs[0]["num_frames"],
                   "size": runs[0]["size"]},
        "machine": machine(),
        "total_seconds": _summary(totals),
        "frames_per_s": runs[0]["num_frames"] / mean_total,
        "stages": stages,
        "stage_seconds_sum": sum(s["seconds"]["mean"] for s in stages),
        "snippet_stage": {"snippets": snippets, "batches": len(runs[0]["batches"]),
                          "snippets_per_s": snippet["rate"], "unet_seconds": unet, "decode_seconds": decode,
                          "device_busy": (unet["mean"] + decode["mean"]) / max(stage_mean, 1e-9)},
        "unet": {"flops_per_snippet": {str(k): v for k, v in sorted(flops_per_snippet.items())},
                 "total_flops": total_flops,
                 "tflops": total_flops / max(unet["mean"], 1e-9) / 1e12,
                 "tflops_stage": total_flops / max(stage_mean, 1e-9) / 1e12},
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": max(gpu) if gpu else None,
        "runs": [{k: v for k, v in r.items() if k != "batches"} for r in runs],
    }


def format_report(report: dict) -> str:
    """The on-screen table."""
    c, m = report["config"], report["machine"]
    lines = [f"rdengine bench: {c['source']} -> {c['frames']} frames at {'x'.join(map(str, c['size'][::-1]))}, "
             f"preset {c['preset']}, model {c['model']}, {c['device']} {c['dtype']}, batch {c['batch_size']}, "
             f"{c['repeat']} repeat(s)",
             f"machine: {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
             f"load avg {m['load_avg_1m']:.2f}" + (f", {m['gpu']}" if "gpu" in m else ""),
             f"{'stage':<18}{'mean s':>9}{'min s':>9}{'rate':>12}  {'unit':<10}{'share':>7}"]
    for s in report["stages"]:
        lines.append(f"{s['stage']:<18}{s['seconds']['mean']:9.2f}{s['seconds']['min']:9.2f}{s['rate']:12.2f}  "
                     f"{s['unit'] + '/s':<10}{s['share'] * 100:6.1f}%")
    t = report["total_seconds"]
    lines.append(f"{'total':<18}{t['mean']:9.2f}{t['min']:9.2f}{report['frames_per_s']:12.2f}  {'frames/s':<10}"
                 f"{'100.0%':>7}")
    sn, u = report["snippet_stage"], report["unet"]
    lines.append(f"snippet stage: {sn['snippets']} snippets in {sn['batches']} batches; UNet "
                 f"{sn['unet_seconds']['mean']:.2f} s, VAE decode {sn['decode_seconds']['mean']:.2f} s; "
                 f"device busy {sn['device_busy'] * 100:.0f}% of the stage")
    lines.append(f"UNet: {u['total_flops'] / 1e12:.3f} TFLOP counted -> {u['tflops']:.3f} TFLOP/s of UNet time "
                 f"({u['tflops_stage']:.3f} over the whole snippet stage)")
    gpu = "n/a" if report["peak_gpu_mib"] is None else f"{report['peak_gpu_mib']:.0f} MiB"
    lines.append(f"peak RSS {report['peak_rss_mib']:.0f} MiB; peak GPU memory {gpu}")
    if "ledger" in report:
        achieved = t["mean"] if c["device"].startswith("cuda") else None
        lines.append(format_ledger(report["ledger"], c["frames"], c.get("peak_tflops"), achieved))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--res", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args.video, preset=args.preset, frames=args.frames, res=args.res, batch_size=args.batch_size,
                 repeat=args.repeat, model=args.model, device=args.device, threads=args.threads,
                 peak_tflops=args.peak_tflops)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

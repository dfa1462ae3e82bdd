"""Snippets/s of the snippet stage against the UNet batch size (``rdengine bench batch-size``).

Each batch size is one full pipeline run (``benchmarks.bench.run``) on the same synthetic
clip; the figure is the snippet stage's rate, plus the UNet and VAE-decode time per snippet
from the worker's timer hook, and the speed-up over the first (smallest) batch size.

    python -m rdengine.benchmarks.batch_size --sizes 1 2 4 8 16 --frames 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..engine.testing.synthetic_clip import write_clip
from . import bench


def run(sizes: list[int], frames: int = 600, width: int = 128, height: int = 96, preset: str = "fast",
        model: str = "tiny", device: str = "auto", threads: int | None = None, repeat: int = 1,
        res: int | None = None, workdir: str | Path | None = None, verbose: bool = True) -> list[dict]:
    """One row per batch size: snippets/s (mean over repeats), per-snippet UNet and decode ms, speed-up."""
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rdengine-bs-") as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", frames=frames, width=width, height=height, fps=25)
        for size in sizes:
            report = bench.run(str(clip), preset=preset, res=res or max(width, height), batch_size=size,
                               repeat=repeat, model=model, device=device, threads=threads, workdir=tmp)
            sn = report["snippet_stage"]
            stage = next(s for s in report["stages"] if s["stage"] == "snippets")
            rows.append({"batch_size": size, "snippets": sn["snippets"], "snippets_per_s": sn["snippets_per_s"],
                         "snippets_per_s_best": stage["rate_best"], "stage_seconds": stage["seconds"],
                         "unet_ms_per_snippet": sn["unet_seconds"]["mean"] / sn["snippets"] * 1e3,
                         "decode_ms_per_snippet": sn["decode_seconds"]["mean"] / sn["snippets"] * 1e3,
                         "device_busy": sn["device_busy"], "unet_tflops": report["unet"]["tflops"],
                         "peak_gpu_mib": report["peak_gpu_mib"], "device": report["config"]["device"],
                         "dtype": report["config"]["dtype"], "frames": frames, "size": [height, width],
                         "load_avg_1m": report["machine"]["load_avg_1m"],
                         "torch_threads": report["machine"]["torch_threads"]})
            rows[-1]["speedup"] = rows[-1]["snippets_per_s"] / rows[0]["snippets_per_s"]
            if verbose:
                print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    return (f"batch {row['batch_size']:3d}  {row['snippets_per_s']:8.2f} snippets/s "
            f"(best {row['snippets_per_s_best']:.2f})"
            f"  UNet {row['unet_ms_per_snippet']:6.1f} ms + decode {row['decode_ms_per_snippet']:6.1f} ms per snippet"
            f"  x{row['speedup']:.2f} vs the first size"
            f"  (load {row['load_avg_1m']:.1f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = run(args.sizes, args.frames, args.width, args.height, model=args.model, device=args.device,
               threads=args.threads, repeat=args.repeat)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Fused Triton cross-frame attention vs SDPA on the UNet's own attention shapes (issue 4).

Both sides take the same ``(b*L, n, heads*d)`` tensors the diffusers projections produce; the
SDPA side is ``kernels.attention.sdpa_attention``, so its time includes the reshapes and head
transposes the fused kernel avoids.  Shapes: every SD2 attention level of an L=3 snippet at
768x432 (latent 54x96) and 1024x576 (72x128): self-attention ``attn1`` over the 3 joined frames
and cross-attention ``attn2`` of each frame to the 2 text tokens.  TFLOP/s counts the two
matmuls (4 * b * heads * n_q * n_kv * d flops, n_q/n_kv joint token counts).

    python -m rdengine.benchmarks.kernel_attention                     # CUDA: fp16 and bf16
    python -m rdengine.benchmarks.kernel_attention --json attn.json    # also write the rows
    python -m rdengine.benchmarks.kernel_attention --interpret         # CPU smoke run

Without a GPU (and without ``--interpret``) it prints that a CUDA GPU is needed and exits
with status 2.  ``--interpret`` restarts the process with TRITON_INTERPRET=1 (triton reads
it at import) and runs two tiny shapes on CPU in fp32: a smoke test of the script, not a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from ..kernels.attention import attention, sdpa_attention

FRAMES = 3
TEXT_TOKENS = 2
HEAD_DIM = 64
# SD2 attention levels: (latent downsampling factor, heads of 64 channels); /8 is the mid block.
LEVELS = ((1, 5), (2, 10), (4, 20), (8, 20))
RESOLUTIONS = {"768x432": (54, 96), "1024x576": (72, 128)}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def ensure_interpreter(module: str) -> None:
    """Re-run ``python -m module`` with the same arguments under TRITON_INTERPRET=1 unless it is set."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]],
                  {**os.environ, "TRITON_INTERPRET": "1"})


def time_ms(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Median milliseconds of ``fn()`` over ``reps`` runs after one warm-up (CUDA: event-timed)."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def level_sizes(latent: tuple[int, int], factor: int) -> tuple[int, int]:
    """Token grid of a UNet level: each stride-2 conv maps h to ceil(h / 2)."""
    h, w = latent
    while factor > 1:
        h, w, factor = -(-h // 2), -(-w // 2), factor // 2
    return h, w


def shapes(tiny: bool) -> list[dict]:
    """Benchmark cases: name, tokens per frame, heads, frames joined, key/value tokens per row."""
    if tiny:
        return [dict(name="tiny attn1 6x8", n=48, heads=2, frames=FRAMES, n_kv=48),
                dict(name="tiny attn2 6x8", n=48, heads=2, frames=1, n_kv=TEXT_TOKENS)]
    cases = []
    for res, latent in RESOLUTIONS.items():
        for factor, heads in LEVELS:
            h, w = level_sizes(latent, factor)
            cases.append(dict(name=f"{res} /{factor} {h}x{w} attn1", n=h * w, heads=heads, frames=FRAMES, n_kv=h * w))
            cases.append(dict(name=f"{res} /{factor} {h}x{w} attn2", n=h * w, heads=heads, frames=1,
                              n_kv=TEXT_TOKENS))
    return cases


def bench_case(case: dict, snippets: int, dtype: torch.dtype, device: torch.device, reps: int,
               head_dim: int = HEAD_DIM) -> dict:
    """Time SDPA and the fused kernel on one case; returns a result row (ms, speedup, TFLOP/s)."""
    rows, width = snippets * FRAMES, case["heads"] * head_dim
    q = torch.randn(rows, case["n"], width, device=device, dtype=dtype)
    k, v = (torch.randn(rows, case["n_kv"], width, device=device, dtype=dtype) for _ in range(2))
    args = dict(heads=case["heads"], frames=case["frames"], scale=head_dim ** -0.5)
    fused = attention(q, k, v, backend="triton", **args)
    diff = (fused.float() - sdpa_attention(q, k, v, **args).float()).abs().max().item()
    ms_sdpa = time_ms(lambda: sdpa_attention(q, k, v, **args), device, reps)
    ms_triton = time_ms(lambda: attention(q, k, v, backend="triton", **args), device, reps)
    flops = 4 * rows * case["heads"] * case["n"] * case["n_kv"] * case["frames"] * head_dim
    return dict(shape=case["name"], dtype=str(dtype).removeprefix("torch."), snippets=snippets,
                ms_sdpa=ms_sdpa, ms_triton=ms_triton, speedup=ms_sdpa / ms_triton,
                tflops_sdpa=flops / ms_sdpa / 1e9, tflops_triton=flops / ms_triton / 1e9, max_abs_diff=diff)


def print_table(rows: list[dict]) -> None:
    print(f"{'shape':<30} {'dtype':<9} {'ms sdpa':>9} {'ms triton':>10} {'speedup':>8} "
          f"{'TFLOP/s sdpa':>13} {'TFLOP/s triton':>15} {'max|diff|':>10}")
    for r in rows:
        print(f"{r['shape']:<30} {r['dtype']:<9} {r['ms_sdpa']:9.3f} {r['ms_triton']:10.3f} {r['speedup']:7.2f}x "
              f"{r['tflops_sdpa']:13.2f} {r['tflops_triton']:15.2f} {r['max_abs_diff']:10.2e}", flush=True)



def write_rows(path: str, device: torch.device, rows: list[dict]) -> None:
    """Write benchmark rows with the device name and torch version as JSON."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with open(path, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=2)

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp16", "bf16"])
    parser.add_argument("--snippets", type=int, default=2, help="snippets per batch (b; rows = 3b)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--interpret", action="store_true",
                        help="smoke run on CPU in the Triton interpreter, tiny shapes, fp32 (implies cpu)")
    parser.add_argument("--json", help="also write the result rows to this JSON file")
    args = parser.parse_args(argv)
    if args.interpret:
        ensure_interpreter(__spec__.name)
    device = torch.device("cpu" if args.interpret else args.device)
    if not args.interpret and (device.type != "cuda" or not torch.cuda.is_available()):
        print("kernel_attention: the Triton kernel needs a CUDA GPU, and there is none here; GPU figures "
              "need a GPU (for a CPU smoke run of this script use --interpret)", file=sys.stderr)
        return 2
    dtypes = ["fp32"] if args.interpret else args.dtypes
    reps = 1 if args.interpret else args.reps
    results = [bench_case(case, args.snippets, DTYPES[name], device, reps,
                          head_dim=16 if args.interpret else HEAD_DIM)
               for name in dtypes for case in shapes(tiny=args.interpret)]
    print_table(results)
    if args.json:
        write_rows(args.json, device, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

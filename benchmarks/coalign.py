"""Co-alignment benchmark: ``fast`` against ``reference`` on synthetic snippet samples.

For each video length a synthetic case is rendered on the SPEC sample grid only (a
768x432 video gives 43x77 maps), then each solver co-aligns it. Rows report wall and CPU
seconds, the peak resident memory the solve added (Linux ``VmHWM``, reset before the solve
after handing freed heap back to the OS: samples already in memory do not count), the
SPEC objective, iterations, and the AbsRel of the merged samples after one affine fit to
the ground truth. The reference is skipped with a note when a few timed Adam steps
predict more than ``time_limit`` seconds.

    python -m rdengine.benchmarks.coalign --frames 250 1000 5000 20000
    rdengine bench coalign --frames 250 --solvers fast reference
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import zarr

from ..engine.coalign import SOLVERS, AlignResult, solve
from ..engine.coalign.reference import ADAM_STEPS
from ..engine.testing.synthetic_depth import absrel_after_affine, make_synthetic_case, merge_in_memory

DEFAULT_FRAMES = (250, 1000, 5000, 20000)
_PROBE_STEPS = 5  # reference steps timed to predict its full run


def _reset_peak_rss() -> bool:
    """Hand freed heap back to the OS (glibc), then reset the kernel's peak-RSS mark of this
    process (Linux), so the next peak counts only new allocations; False where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except (OSError, AttributeError):
        return False


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def measure(call: Callable[[], AlignResult]) -> tuple[AlignResult, dict]:
    """Run ``call``; returns its result and wall/CPU seconds and added peak RSS (MiB, or None)."""
    tracked = _reset_peak_rss()
    base = _rss_kib("VmRSS") if tracked else 0
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    stats = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
             "peak_rss_added_mib": (_rss_kib("VmHWM") - base) / 1024 if tracked else None}
    return result, stats


def _samples(case_snippets: list[np.ndarray], store: str, workdir: str) -> list:
    """The case's sample arrays as numpy (``memory``) or as a zarr store on disk (``zarr``)."""
    if store == "memory":
        return case_snippets
    root = zarr.open_group(str(Path(workdir) / "samples.zarr"), mode="w")
    arrays = []
    for g, x in enumerate(case_snippets):
        arr = root.create_array(f"g{g}", shape=x.shape, chunks=(256,) + x.shape[1:], dtype="float32")
        for lo in range(0, x.shape[0], 4096):
            arr[lo:lo + 4096] = x[lo:lo + 4096]
        arrays.append(arr)
    return arrays


def run(frames: Sequence[int] = DEFAULT_FRAMES, solvers: Sequence[str] = SOLVERS,
        dilations: Sequence[int] = (1, 10, 25), height: int = 432, width: int = 768, snippet_len: int = 3,
        seed: int = 0, memory_budget: int = 1 << 30, time_limit: float = 600.0, store: str = "memory",
        absrel: bool = True, threads: int = 1, log: Callable[[str], None] = print) -> list[dict]:
    """Benchmark the solvers on one synthetic case per video length; returns one row per
    (frames, solver), with ``speedup`` (reference / fast seconds) on fast rows when both ran.

    ``store``: ``memory`` (numpy samples) or ``zarr`` (samples read from a zarr store on
    disk, as the pipeline's run store serves them). ``absrel``: also merge and evaluate.
    ``threads``: torch and OpenBLAS threads of both solvers (``solve``'s ``threads``).
    """
    rows = []
    for count in frames:
        case = make_synthetic_case(count, height, width, list(dilations), snippet_len, seed=seed, sampled_only=True)
        global_min = min(float(x.min()) for x in case.snippets)
        args = (list(dilations), case.lengths, count, global_min)
        options = {"memory_budget": memory_budget, "threads": threads}
        with tempfile.TemporaryDirectory() as workdir:
            samples = _samples(case.snippets, store, workdir)
            by_solver = {}
            for solver in solvers:
                row = {"frames": count, "solver": solver, "store": store, "dilations": list(dilations),
                       "map_pixels": int(np.prod(case.snippets[0].shape[2:])), "memory_budget": memory_budget,
                       "threads": threads, "load_avg_1m": os.getloadavg()[0]}
                if solver == "reference":
                    _, probe = measure(lambda: solve(samples, *args, solver=solver, max_iter=_PROBE_STEPS, **options))
                    row["estimated_seconds"] = probe["seconds"] / _PROBE_STEPS * ADAM_STEPS
                    if row["estimated_seconds"] > time_limit:
                        row["skipped"] = f"estimated {row['estimated_seconds']:.0f} s > {time_limit:.0f} s limit"
                        rows.append(row)
                        log(f"{count:6d} frames  {solver:9s}  skipped: {row['skipped']}")
                        continue
                result, stats = measure(lambda: solve(samples, *args, solver=solver, **options))
                row.update(stats, objective=result.objective, iterations=result.iterations)
                if absrel:
                    row["absrel"] = absrel_after_affine(merge_in_memory(case.snippets, case.dilations, result), case.gt)
                by_solver[solver] = row
                rows.append(row)
                log(f"{count:6d} frames  {solver:9s}  {row['seconds']:8.2f} s (cpu {row['cpu_seconds']:7.2f} s)  "
                    f"peak +{row['peak_rss_added_mib'] or float('nan'):7.1f} MiB  objective {row['objective']:.6f}  "
                    f"{row['iterations']:5d} it" + (f"  AbsRel {row['absrel']:.4f}" if absrel else ""))
            if {"fast", "reference"} <= by_solver.keys():
                by_solver["fast"]["speedup"] = by_solver["reference"]["seconds"] / by_solver["fast"]["seconds"]
                log(f"{count:6d} frames  speedup fast vs reference: {by_solver['fast']['speedup']:.0f}x")
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Command line: ``python -m rdengine.benchmarks.coalign [options]``."""
    parser = argparse.ArgumentParser(prog="rdengine bench coalign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=list(DEFAULT_FRAMES))
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 10, 25])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=432)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-budget-mib", type=int, default=1024)
    parser.add_argument("--time-limit", type=float, default=600.0, help="skip the reference beyond this estimate (s)")
    parser.add_argument("--store", choices=["memory", "zarr"], default="memory")
    parser.add_argument("--no-absrel", action="store_true", help="skip merging and AbsRel")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the solvers")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.frames, args.solvers, args.dilations, args.height, args.width, seed=args.seed,
               memory_budget=args.memory_budget_mib << 20, time_limit=args.time_limit, store=args.store,
               absrel=not args.no_absrel, threads=args.threads)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()

"""Several clips in one Python session against one ``rdengine process`` per clip.

    rdengine bench api [--clips 3] [--frames 48] [--size 128x96] [--model tiny] [--repeat 1]

``--clips`` synthetic clips (different content) are processed twice, each in fresh processes
started as a user starts them: once by ``rdengine process`` per clip, once by one Python
process that calls ``RollingDepth.from_pretrained`` once and then the instance per clip. A
third kind of process only loads the model (the imports of torch and diffusers, then
``load_model``): what each extra CLI process pays again. The session must load the model
once and take no longer than the CLI runs together minus ``clips - 1`` of those loads; the
depth of both must be the same bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..engine.testing.random_checkpoint import write_random_checkpoint
from ..engine.testing.synthetic_clip import write_clip

SESSION = """
import json, sys, time
started = time.perf_counter()
import rdengine
from rdengine.engine import model as models
loads = []
load_model = models.load_model
models.load_model = lambda *a, **k: loads.append(1) or load_model(*a, **k)
checkpoint, clips, outs, options = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), json.loads(sys.argv[4])
rd = rdengine.RollingDepth.from_pretrained(checkpoint, **options)
for clip, out in zip(clips, outs):
    rd(clip, out)
print(json.dumps({"loads": len(loads), "inside_s": time.perf_counter() - started}))
"""

LOAD_ONLY = """
import sys, time
started = time.perf_counter()
from rdengine.engine.model import load_model
imported = time.perf_counter()
load_model(sys.argv[1], sys.argv[2], sys.argv[3], "auto")
print(imported - started, time.perf_counter() - imported)
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of a child process (start to exit) and its stdout; fails loudly."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... failed: {done.stderr[-800:]}")
    return time.perf_counter() - started, done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench api", description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="clips per session")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    parser.add_argument("--size", default="128x96", help="clip WxH (processed at its own size)")
    parser.add_argument("--model", default="tiny", help="tiny, full-random or a checkpoint folder / hub id")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (CLI runs, session, load); medians reported")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    options = {"device": args.device, "dtype": "fp32" if args.device == "cpu" else "fp16", "res": max(width, height),
               "save": ["npy"], "progress": False}
    with tempfile.TemporaryDirectory(prefix="rdengine-api-") as tmp:
        tmp = Path(tmp)
        checkpoint = str(write_random_checkpoint(tmp / "ckpt", size="full" if args.model == "full-random" else "tiny")
                         if args.model in ("tiny", "full-random") else args.model)
        clips = [write_clip(tmp / f"clip{i}.mp4", frames=args.frames, width=width, height=height, seed=i)
                 for i in range(args.clips)]
        cli_args = ["--checkpoint", checkpoint, "--device", options["device"], "--dtype", options["dtype"],
                    "--res", str(options["res"]), "--save", "npy", "--quiet"]
        cli_totals, sessions, loads, imports = [], [], [], []
        for round_ in range(args.repeat):
            cli_outs = [tmp / f"cli{round_}_{i}" for i in range(args.clips)]
            cli_totals.append(sum(timed([sys.executable, "-m", "rdengine.cli", "process", str(clip), "-o", str(out),
                                         *cli_args])[0] for clip, out in zip(clips, cli_outs)))
            api_outs = [tmp / f"api{round_}_{i}" for i in range(args.clips)]
            seconds, printed = timed([sys.executable, "-c", SESSION, checkpoint, ",".join(map(str, clips)),
                                      ",".join(map(str, api_outs)), json.dumps(options)])
            session = json.loads(printed)
            sessions.append(seconds)
            imported, loaded = (float(v) for v in timed([sys.executable, "-c", LOAD_ONLY, checkpoint,
                                                         options["device"], options["dtype"]])[1].split())
            imports.append(imported)
            loads.append(loaded)
            same = all(np.array_equal(np.load(a / f"clip{i}_depth.npy"), np.load(c / f"clip{i}_depth.npy"))
                       for i, (a, c) in enumerate(zip(api_outs, cli_outs)))
    cli, api, load, imp = (statistics.median(v) for v in (cli_totals, sessions, loads, imports))
    saved = args.clips - 1
    print(f"{args.clips} clips of {args.frames} frames at {width}x{height}, model {args.model} on {args.device} "
          f"(medians of {args.repeat} round(s)):")
    print(f"  rdengine process, one per clip   {cli:7.2f} s in all")
    print(f"  one Python session               {api:7.2f} s  (model loaded {session['loads']} time(s))")
    print(f"  a model load in a fresh process  {imp + load:7.2f} s  (imports {imp:.2f} s + load_model {load:.2f} s)")
    print(f"  bound: CLI - {saved} x load_model = {cli - saved * load:.2f} s; CLI - {saved} x (imports + load) = "
          f"{cli - saved * (imp + load):.2f} s")
    print(f"  session within the stricter bound: {'yes' if api <= cli - saved * (imp + load) else 'NO'}; "
          f"depth bytes equal to the CLI's: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()

"""Command line: ``rdengine process|batch|serve|demo|eval|inspect|make-checkpoint|bench ...``.

A thin shell: ``process`` is ``rdengine.RollingDepth(**options)(VIDEO, OUT)``, its options
built from the one table in ``engine.options`` (names, types, defaults, help, rules). User
mistakes (``rdengine.errors.RdengineError``) end in one ``error: ...`` line and exit code 2,
never a traceback. Importing this module loads no torch, zarr or av: ``--help``, ``--version``
and option errors answer at once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from . import __version__
from .engine.config import DTYPES, PRESETS
from .engine.options import Option, RunOptions, command_options, option
from .engine.warning_lines import warnings_as_lines
from .errors import ConfigError, EngineError, EvalInputError, InputError, RdengineError

LIST_OPTIONS = tuple(o.flag for o in command_options() if o.kind == "ints")
RESUMABLE_COMMANDS = ("process", "batch", "demo")


class Cli(click.Group):
    """Click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        shown: set[str] = set()

        def warn(text: str) -> None:  # once per distinct text
            if text not in shown:
                shown.add(text)
                click.echo(f"warning: {text}", err=True)

        try:
            with warnings_as_lines(warn):
                return super().invoke(ctx)
        except RdengineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see ``main``): what is recorded stays
            resumable = ctx.invoked_subcommand in RESUMABLE_COMMANDS
            click.echo("\ninterrupted" + (": rerun the same command to resume" if resumable else ""), err=True)
            ctx.exit(130)


def join_list_options(args: list[str]) -> list[str]:
    """Let ``--dilations 1 10 25`` mean ``--dilations 1,10,25`` (integers following the option)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in LIST_OPTIONS:
            values = []
            while i + 1 < len(args) and args[i + 1].replace(",", "").isdigit():
                values.append(args[i + 1])
                i += 1
            out.append(",".join(values))
        i += 1
    return out


def int_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace(" ", ",").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected integers like '1 10 25', got '{value}'") from None


METAVARS = {"int": "INTEGER", "float": "FLOAT", "text": "TEXT", "ints": "N[,N...]"}


def click_option(row: Option):
    """The click option of a table row: values reach the library as typed (strings), which checks them."""
    names = [row.flag, *([row.short] if row.short else []), *row.aliases, row.name]
    if row.kind == "flag":
        return click.option(*names, is_flag=True, help=row.help)
    if row.kind == "switch":
        return click.option(f"{row.flag}/--no-{row.flag[2:]}", row.name, default=None, help=row.help)
    metavar = row.metavar or (f"[{'|'.join(row.choices)}]" if row.choices else METAVARS[row.kind])
    return click.option(*names, type=str, default=row.default, show_default=row.default not in (None, ()),
                        multiple=row.kind == "choices", metavar=metavar, help=row.help)


def table_options(batch: bool = False):
    """Decorator adding the table's options of ``process`` (or ``batch``) to a command."""
    def decorate(fn):
        for row in reversed(command_options(batch)):
            fn = click_option(row)(fn)
        return fn
    return decorate


def print_summary(result) -> None:
    from .engine.progress import summary_lines

    for line in summary_lines(result.stages, result.seconds, result.cumulative_seconds, result.num_frames,
                              runs=result.runs):
        click.echo(line)
    for fmt, path in result.outputs.items():
        click.echo(f"  {fmt:<6} {path}")


@click.group(cls=Cli)
@click.version_option(__version__, "--version", prog_name="rdengine", message="%(prog)s %(version)s")
def cli() -> None:
    """rdengine: streaming, resumable RollingDepth video depth."""


@cli.command()
@click.argument("video", type=click.Path(path_type=str))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="output folder")
@table_options()
def process(video: str, out_dir: Path, **options) -> None:
    """Estimate depth for every frame of VIDEO into OUT (run store, npy, mp4, ...).

    VIDEO is a video file or an image sequence: a folder of frames, a pattern like
    shot_%04d.exr, or a glob like 'plates/*.png'. Depth is relative inverse depth
    (near = large), each shot normalized to [-1, 1], at the processing size (--res);
    rerunning the same command resumes an interrupted run.
    """
    from .api import RollingDepth

    print_summary(RollingDepth(**options)(video, out_dir).run)


@cli.command()
@click.option("--runs", type=click.Path(path_type=Path), default=Path("rdengine-runs"), show_default=True,
              help="folder of the jobs: one output folder each, kept across restarts")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; any other than 127.0.0.1/localhost/::1 needs --auth")
@click.option("--port", type=click.IntRange(1, 65535), help="port (default: Gradio's, 7860 or the next free one)")
@click_option(option("checkpoint"))
@click_option(option("device"))
@click.option("--allow-dir", "allow_dirs", multiple=True, type=click.Path(path_type=Path),
              help="a server folder whose videos may be given by path (repeatable; default: uploads only)")
@click.option("--auth", metavar="USER:PASS", help="log-in asked of every visitor")
@click.option("--max-upload", type=click.IntRange(1), default=2048, show_default=True,
              help="largest upload (and unpacked zip of frames) in MiB")
def serve(runs: Path, host: str, port: int | None, checkpoint: str, device: str, allow_dirs: tuple[Path, ...],
          auth: str | None, max_upload: int) -> None:
    """A web page to submit videos, watch the queue (one run at a time) and look at the depth.

    Each job is an output folder under --runs, as `rdengine process` makes: jobs survive a
    restart and resume where they stopped. Needs the `ui` extra (pip install "rdengine[ui]").
    """
    from .engine.serve.security import login

    credentials = login(host, auth)
    defaults = {"checkpoint": checkpoint, "device": device}
    RunOptions(defaults)
    missing = [str(folder) for folder in allow_dirs if not folder.is_dir()]
    if missing:
        raise ConfigError(f"--allow-dir {missing[0]} is not a folder")
    try:
        from .engine.serve.app import serve as serve_page
    except ImportError as exc:
        raise ConfigError(f"rdengine serve needs the ui extra: pip install 'rdengine[ui]' ({exc})") from None
    click.echo(f"serving jobs of {runs} on http://{host}:{port or 7860} (Ctrl-C stops; jobs resume on restart)",
               err=True)
    serve_page(runs, host, port, credentials, allow_dirs, max_upload << 20, defaults)


@cli.command("make-checkpoint")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--size", type=click.Choice(["tiny", "full"]), default="tiny", show_default=True,
              help="tiny: a few MB, for tests; full: the real architecture's size, for timing")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="seed of the random weights")
@click.option("--overwrite", is_flag=True, help="replace an existing folder at PATH")
def make_checkpoint(path: Path, size: str, seed: int, overwrite: bool) -> None:
    """Write a random-weight checkpoint in the real RollingDepth layout (depth is meaningless)."""
    from .engine.errors import describe_os_error
    from .engine.testing.random_checkpoint import write_random_checkpoint

    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not overwrite:
        raise EngineError(f"{path} exists; choose another path or add --overwrite to replace it")
    try:
        write_random_checkpoint(path, size=size, seed=seed)
    except OSError as exc:
        raise EngineError(f"cannot write a checkpoint to {path}: {describe_os_error(exc)}") from None
    click.echo(f"wrote a {size} random-weight checkpoint to {path} (for tests and timing only)")


@cli.command()
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="output folder (clip, tiny checkpoint, depth, videos)")
@click.option("--frames", type=click.IntRange(1, 10000), default=48, show_default=True,
              help="length of the synthetic clip")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars, only the summary")
def demo(out_dir: Path, frames: int, quiet: bool) -> None:
    """Run the whole pipeline offline: a synthetic clip and a tiny random checkpoint."""
    from .api import RollingDepth
    from .engine.errors import output_folder
    from .engine.testing.random_checkpoint import write_random_checkpoint
    from .engine.testing.synthetic_clip import write_clip

    banner = ("DEMO: random-weight tiny checkpoint, synthetic clip. The depth it shows is MEANINGLESS; "
              "it proves the pipeline runs. Use --checkpoint prs-eth/rollingdepth-v1-0 (or a local copy) "
              "with `rdengine process` for real depth.")
    click.secho(banner, fg="yellow", err=True)
    output_folder(out_dir)
    checkpoint = out_dir / "tiny-checkpoint"
    if not (checkpoint / "model_index.json").exists():
        write_random_checkpoint(checkpoint)
    clip = write_clip(out_dir / "synthetic.mp4", frames=frames, width=128, height=96)
    rolling_depth = RollingDepth(checkpoint, res=128, dtype="fp32", device="cpu", save=("npy", "mp4", "sbs"),
                                 quiet=quiet, overwrite=True)
    print_summary(rolling_depth(clip, out_dir).run)
    click.secho(banner, fg="yellow", err=True)


@cli.command("eval")
@click.argument("pred", required=False, type=click.Path(path_type=Path))
@click.argument("gt", required=False, type=click.Path(path_type=Path))
@click.option("--list", "pairs_csv", type=click.Path(path_type=Path), help="CSV with columns name,pred,gt")
@click.option("--pred-root", type=click.Path(path_type=Path), help="folder of predictions (matched by name)")
@click.option("--gt-root", type=click.Path(path_type=Path), help="folder of ground truths (matched by name)")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="folder for metrics and plots")
@click.option("--depth-scale", type=float, default=1000.0, show_default=True,
              help="integer ground truth is divided by this (1000: mm -> m)")
@click.option("--min-depth", type=float, default=1e-3, show_default=True,
              help="valid ground-truth depth floor in metres (and the aligned prediction's clip)")
@click.option("--max-depth", type=float, help="valid ground-truth depth cap in metres (e.g. 23 for DyDToF)")
@click.option("--crop", default="0,0,0,0", show_default=True, help="border crop top,bottom,left,right in pixels")
@click.option("--mask", "masks", multiple=True, type=click.Path(path_type=Path), help="validity mask(s), nonzero=valid")
@click.option("--per-shot", is_flag=True, help="one affine fit per shot (shots of a shot-aware run: from its run "
                                                "store, or a *_shots.json beside the prediction)")
def evaluate(pred, gt, pairs_csv, pred_root, gt_root, out_dir, depth_scale, min_depth, max_depth, crop, masks,
             per_shot):
    """Score predictions against ground truth with the paper's protocol (one affine fit per video)."""
    from .engine.eval.evaluate import evaluate_many, evaluate_video, pair_folders, parse_crop, read_pairs_csv, \
        report_text

    options = dict(depth_scale=depth_scale, min_depth=min_depth, max_depth=max_depth, crop=parse_crop(crop),
                   mask_path=list(masks) or None, per_shot=per_shot)
    if pairs_csv:
        pairs = read_pairs_csv(pairs_csv)
    elif pred_root and gt_root:
        pairs = pair_folders(pred_root, gt_root)
    elif pred and gt:
        click.echo(report_text([evaluate_video(pred, gt, out_dir=out_dir, **options)], per_shot))
        return
    else:
        raise EvalInputError("give PRED GT, or --list CSV, or --pred-root and --gt-root")
    click.echo(report_text(evaluate_many(pairs, out_dir, **options), per_shot))


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "out_root", required=True,
              help="output root: one folder per video (a local folder or an fsspec URL)")
@click.option("--workers", type=int, help="local worker processes (default: one per GPU; 1 on CPU)")
@click.option("--scheduler", help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
@click.option("--cache-dir", help="worker-local folder for copies of URL inputs and staged URL outputs")
@click.option("--split-frames", type=click.IntRange(min=0), default=20000, show_default=True,
              help="videos of at least this many frames are not one task: their units spread over every worker "
                   "(as `process --workers`); 0: never")
@table_options(batch=True)
def batch(inputs: tuple[str, ...], out_root: str, workers: int | None, scheduler: str | None,
          cache_dir: str | None, split_frames: int, **options) -> None:
    """Process every video of INPUT... (videos, folders, list files, globs; paths or URLs) on Dask, resumably."""
    from .engine.batch.run import format_table, run_batch
    from .engine.model import resolve_device

    checked = RunOptions(options)
    dtype, note = checked.compute_dtype(resolve_device(checked["device"]).type)
    if note:
        click.echo(f"note: {note}", err=True)
    report = run_batch(inputs, out_root, checked.run_config(dtype), checked.execution(), workers=workers,
                       scheduler=scheduler, cache_dir=cache_dir, split_frames=split_frames)
    click.echo(format_table(report))
    if report.failed or report.kept:  # not every video was processed as asked
        raise SystemExit(1)


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="decompress every chunk and check the completion records")
def inspect(store: Path, verify: bool) -> None:
    """Show a run store (OUTDIR or OUTDIR/run.zarr): config, input, progress, sizes; --verify checks it."""
    from .engine.inspection import describe, open_for_inspect, verify as verify_store

    run = open_for_inspect(store)
    click.echo("\n".join(describe(run)))
    if verify:
        problems = verify_store(run)
        for problem in problems:
            click.echo(f"damaged: {problem}", err=True)
        if problems:
            click.echo(f"error: damaged store: {run.path} has {len(problems)} problem(s); rerun the same process "
                       "command to recompute the damaged units (or start over with --overwrite)", err=True)
            raise SystemExit(1)
        click.echo("verify      OK: every chunk decodes and every completion record is backed by data")


class BenchGroup(Cli):
    """``rdengine bench SUBCOMMAND ...``; without a subcommand name first, ``pipeline`` is meant:
    ``rdengine bench [VIDEO] [OPTIONS]`` = ``rdengine bench pipeline [VIDEO] [OPTIONS]``."""

    default_command = "pipeline"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _bench_json(path: Path | None, data) -> None:
    if path:
        import json

        path.write_text(json.dumps(data, indent=2))
        click.echo(f"wrote {path}")


@cli.group(cls=BenchGroup)
def bench() -> None:
    """Benchmarks: `rdengine bench [VIDEO] [OPTIONS]` times the pipeline (subcommand `pipeline`);
    `scaling`, `batch-size` and `coalign` measure memory, batching and the co-alignment solvers;
    `startup` the command line's answers, `api` clips in one Python session."""


@bench.command("pipeline")
@click.argument("video", required=False, type=click.Path(path_type=str))
@click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True,
              help="settings preset, as for `process`")
@click.option("--frames", type=click.IntRange(min=1),
              help="frames (synthetic clip length, default 250; with VIDEO: the first N)")
@click.option("--res", type=int, help="processing resolution (default: the preset's; synthetic: the clip's)")
@click.option("--clip-size", default=None, help="synthetic clip WxH (default 768x432 on CUDA, 128x96 on CPU)")
@click.option("--batch-size", type=int, help="snippets per UNet call (default: from device memory)")
@click.option("--repeat", type=int, default=1, show_default=True, help="runs; stages report mean and min")
@click.option("--model", default="tiny", show_default=True, help="tiny, full-random (SD2-size, random weights) "
              "or a checkpoint folder / hub id")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--dtype", type=click.Choice(DTYPES), help="default: the preset's (fp32 on CPU)")
@click.option("--attention", type=click.Choice(["auto", "triton", "sdpa"]), default="auto", show_default=True,
              help="attention kernel (auto: triton on CUDA when installed, else sdpa)")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's)")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True),
              help="a device's peak TFLOP/s for the device-work ledger (default: the GPU's own, if known)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="also write the report as JSON")
def bench_pipeline(video, preset, frames, res, clip_size, batch_size, repeat, model, device, dtype, attention,
                   threads, peak_tflops, json_path) -> None:
    """Benchmark the pipeline on VIDEO (a synthetic clip when none): per-stage time, rate, share,
    peak RSS / GPU memory, achieved UNet TFLOP/s and the device-work ledger (UNet passes, VAE
    encodes and decodes per frame, TFLOP of the real architecture, time at peak)."""
    from .benchmarks import bench as pipeline_bench

    size = None
    if clip_size:
        try:
            size = tuple(int(v) for v in clip_size.lower().split("x"))
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise ConfigError(f"--clip-size must look like 768x432, not '{clip_size}'") from None
    if repeat < 1 or (batch_size is not None and batch_size < 1):
        raise ConfigError("--repeat and --batch-size must be >= 1")
    if video and not Path(video).exists():
        raise InputError(f"video not found: {video}")
    report = pipeline_bench.run(video, preset=preset, frames=frames, res=res, batch_size=batch_size, repeat=repeat,
                                model=model, device=device, dtype=dtype, attention=attention, clip_size=size,
                                threads=threads, peak_tflops=peak_tflops)
    click.echo(pipeline_bench.format_report(report))
    _bench_json(json_path, report)


@bench.command("scaling")
@click.option("--frames", "counts", type=click.IntRange(min=1), multiple=True,
              help="frame counts (repeatable; default 250 1000 4000)")
@click.option("--width", type=int, default=128, show_default=True, help="synthetic clip width (px)")
@click.option("--height", type=int, default=96, show_default=True, help="synthetic clip height (px)")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True,
              help="settings preset, as for `process`")
@click.option("--threads", type=int, help="torch threads of each child process")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="also write the figures as JSON")
def bench_scaling(counts, width, height, preset, threads, json_path) -> None:
    """Peak RSS and wall time of `rdengine process` (tiny model) against video length: memory stays flat."""
    from .benchmarks import scaling

    _bench_json(json_path, scaling.run(list(counts) or [250, 1000, 4000], width, height, preset, threads=threads))


@bench.command("batch-size")
@click.option("--sizes", default="1,2,4,8,16", show_default=True, callback=int_list,
              help="snippets per UNet call to time")
@click.option("--frames", type=click.IntRange(min=1), default=600, show_default=True, help="synthetic clip length")
@click.option("--width", type=int, default=128, show_default=True, help="synthetic clip width (px)")
@click.option("--height", type=int, default=96, show_default=True, help="synthetic clip height (px)")
@click.option("--model", default="tiny", show_default=True, help="tiny, full-random or a checkpoint folder / hub id")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's)")
@click.option("--repeat", type=int, default=1, show_default=True, help="runs per size; the best is reported")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="also write the figures as JSON")
def bench_batch_size(sizes, frames, width, height, model, device, threads, repeat, json_path) -> None:
    """Snippets/s of the snippet stage against the UNet batch size."""
    from .benchmarks import batch_size

    _bench_json(json_path, batch_size.run(list(sizes), frames, width, height, model=model, device=device,
                                          threads=threads, repeat=repeat))


@bench.command("coalign", add_help_option=False,
               context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_coalign(args) -> None:
    """Co-alignment solvers benchmark (options are those of `python -m rdengine.benchmarks.coalign`)."""
    try:
        from .benchmarks import coalign
    except ImportError as exc:
        raise EngineError(f"the co-alignment benchmark is not available in this build ({exc})") from None
    # main() joined "--dilations 1 10 25" into "1,10,25"; the benchmark's argparse wants them apart
    argv = [v for a in args for v in (a.split(",") if a.replace(",", "").isdigit() and "," in a else [a])]
    coalign.main(argv)


# Benchmarks that parse their own options: subcommand -> (module in rdengine.benchmarks, what it measures).
PASS_THROUGH_BENCHES = {
    "film": ("film", "Film-scale runs: time per frame, peak memory, store bytes and files per frame (other "
                     "options go to `rdengine process`)."),
    "cluster": ("cluster", "One video on 1 vs N local workers: snippet-stage speed-up, and a projection to N GPUs."),
    "shots": ("shots", "Cut detection: its time per frame and what it adds to ingest."),
    "edit": ("edit", "An edited film shot by shot: decodes per snippet frame, scratch in flight, when shots "
                     "are final."),
    "scratch-codecs": ("scratch_codecs", "Lossless codecs for the snippet depth scratch on smooth depth: "
                                         "bytes per map, speed."),
    "startup": ("startup", "Start-up latency of fresh processes: --help, --version, option errors, the first "
                           "line of process."),
    "api": ("api_session", "Clips in one Python session (model loaded once) against one `rdengine process` each."),
}


def add_pass_through_bench(name: str, module: str, about: str) -> None:
    """``rdengine bench NAME ARGS...``: ``rdengine.benchmarks.MODULE.main(ARGS)``, imported when run."""

    def run(args) -> None:
        import importlib

        importlib.import_module(f"{__package__}.benchmarks.{module}").main(list(args))

    command = click.argument("args", nargs=-1, type=click.UNPROCESSED)(run)
    bench.command(name, add_help_option=False, help=f"{about} (`rdengine bench {name} --help`)",
                  context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))(command)


for _name, (_module, _about) in PASS_THROUGH_BENCHES.items():
    add_pass_through_bench(_name, _module, _about)


def terminate(signum, frame) -> None:
    """SIGTERM (a cluster's job scheduler, ``kill``) ends a run like Ctrl-C: locks released, message."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    signal.signal(signal.SIGTERM, terminate)
    args = sys.argv[1:] if argv is None else argv
    cli.main(args=join_list_options(args), prog_name="rdengine")


if __name__ == "__main__":
    main()

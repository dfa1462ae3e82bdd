"""Command line: ``rdengine process|demo|make-checkpoint ...``.

User mistakes end in one ``error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path

import click

from .engine.config import DEFAULT_CHECKPOINT, DEVICE_FORMS, DTYPES, EXPORTS, EXR_COMPRESSIONS, EXR_DTYPES, \
    OUTPUT_KINDS, PRESETS, SHOT_MODES, ConfigError, ExecutionOptions, resolve_config, validate_options
from .engine.errors import EngineError, output_folder
from .engine.plan import SCRATCH_MODES
from .engine.warning_lines import warnings_as_lines
from .engine.eval.readers import EvalInputError
from .storage.inputs import InputError, InputWarning

USER_ERRORS = (EngineError, ConfigError, InputError, EvalInputError)
LIST_OPTIONS = ("--dilations", "--snippet-len")
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
        except USER_ERRORS as exc:
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


PRESET_HELP = "; ".join(
    f"{name}: {p['res']} px, dilations {' '.join(map(str, p['dilations']))}, {p['dtype']}"
    f"{'' if p['cap_dilation'] else ', no dilation cap'}, {p['refine_steps'] or 'no'} refinement steps"
    for name, p in PRESETS.items())


def process_options(fn):
    """The options shared by ``process``, ``batch`` and ``bench``."""
    options = [
        # what is computed (part of the run's identity: a change starts a new run)
        click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True,
                     help=f"published settings ({PRESET_HELP}); every value can be overridden below"),
        click.option("--res", type=int, help="processing resolution: the longer side in px (default: the preset's, "
                                             "768 or 1024; 0 = native size). Depth comes out at this size, e.g. "
                                             "1080p at --res 768 gives 768x432, unless --restore-res"),
        click.option("--dilations", callback=int_list, help="frame spacings of the snippets, e.g. 1 10 25 "
                                                            "(must include 1; default: the preset's)"),
        click.option("--snippet-len", callback=int_list, help="frames per snippet, one value or one per dilation "
                                                              "(2..4; default 3)"),
        click.option("--refine-steps", type=int, help="diffusion refinement steps after co-alignment (0 = none; "
                                                      "default: the preset's, 0 or 10)"),
        click.option("--refine-start-dilation", type=int, help="frame spacing of the first refinement step, "
                                                               "coarse to fine down to 1 (default 6)"),
        click.option("--cap-dilation/--no-cap-dilation", default=None,
                     help="cap dilations at int(frames / snippet length) - 1 for short videos "
                          "(default: the preset's; off for paper)"),
        click.option("--dtype", type=click.Choice(DTYPES), help="compute precision (default: the preset's; on CPU "
                                                                "fp16 presets compute in fp32)"),
        click.option("--coalign", type=click.Choice(["fast", "reference"]),
                     help="co-alignment solver: fast (least squares + L-BFGS; default) or reference (the published "
                          "2000 Adam steps; default with --reproduce)"),
        click.option("--shots", metavar="auto|none|FILE",
                     help="cuts: detected while ingesting (auto; default), none (one shot), or a cut list FILE "
                          "(frame numbers, CSV with timecodes or frames, or a CMX3600 EDL); snippets never cross a "
                          "cut and each shot is aligned on its own"),
        click.option("--shot-threshold", type=float,
                     help="cut detection threshold: how many times a frame's change exceeds its neighbours' "
                          "(PySceneDetect adaptive detector; default 1.5, lower finds more)"),
        click.option("--normalize", type=click.Choice(["shot", "global"]), default="shot", show_default=True,
                     help="map each shot's depth to [-1, 1], or use one range over the whole video"),
        click.option("--reproduce", is_flag=True,
                     help="the authors' exact numbers: their frame size rule (depth 8*floor(H/8) x 8*floor(W/8), "
                          "the top-left of the frame), the reference solver, their fp16/fp32 arithmetic, no shots"),
        click.option("--seed", type=int, default=2024, show_default=True, help="seed of the initial noise"),
        click.option("--start", type=int, default=0, show_default=True,
                     help="first frame of the clip: a video's frame index (from 0), an image sequence's own frame "
                          "number (e.g. 1001); outputs keep the input's frame numbers"),
        click.option("--frames", "--max-frames", "frames", type=int,
                     help="process at most N frames (after --stride; default: to the end)"),
        click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
                     help="process every Kth frame from --start; frames keep the input's numbers (0, 2, 4, ...) and "
                          "outputs play at the input's rate / K"),
        click.option("--target-fps", type=float,
                     help="process the input at about this rate: the stride nearest input fps / F (instead of "
                          "--stride)"),
        click.option("--stream", type=click.IntRange(min=0),
                     help="the video stream to read (index as ffprobe numbers them; default: the main video)"),
        click.option("--checkpoint", default=DEFAULT_CHECKPOINT, show_default=True,
                     help="hub id or local folder in the same layout (offline: a local folder)"),
        # how it is computed (speed, memory, disk; the depth stays the same)
        click.option("--device", default="auto", show_default=True, help=f"compute device: {DEVICE_FORMS}"),
        click.option("--attention", type=click.Choice(["auto", "triton", "sdpa"]), default="auto", show_default=True,
                     help="cross-frame attention kernel: fused Triton (CUDA), torch SDPA, or auto"),
        click.option("--batch-size", type=int, help="snippets per UNet call (default: from free GPU memory; 4 on CPU)"),
        click.option("--threads", type=click.IntRange(min=1),
                     help="torch CPU threads (per worker on a cluster; default: torch's, on a local cluster the "
                          "cores split between workers). CPU results differ in the last bits between thread "
                          "counts: compare runs at the same count"),
        click.option("--coalign-memory", type=click.IntRange(min=16), default=256, show_default=True,
                     help="co-alignment memory budget in MiB; past it the solver streams from disk"),
        click.option("--scratch", type=click.Choice(SCRATCH_MODES), default="auto", show_default=True,
                     help="snippet scratch, per shot: 'depth' keeps full-resolution snippet depth (compressed, "
                          "lossless) until the shot's merge (the method's device work), 'latent' keeps latents and "
                          "decodes them again at merge time (a fraction of the disk, one more VAE decode per snippet "
                          "frame); auto: depth for every shot that fits --scratch-budget, latent for a longer take"),
        click.option("--scratch-budget", type=click.FloatRange(min=0), default=8.0, show_default=True,
                     help="GiB of snippet scratch the shots in flight may hold (at most half the free disk); at "
                          "768 px a shot of about 4 minutes fits 8 GiB"),
        click.option("--unit-frames", type=click.IntRange(min=1),
                     help="frames per shard of the per-frame arrays (default: 8..128 by frame size): smaller shards "
                          "spread better over a cluster, at more files and records"),
        click.option("--unit-seconds", type=click.FloatRange(min=0.01), default=60.0, show_default=True,
                     help="device work per snippet unit, measured as the run goes: a kill loses at most about "
                          "this much"),
        click.option("--keep-intermediates", is_flag=True,
                     help="keep every intermediate array in the run store (default: released once used)"),
        # outputs
        click.option("--save", multiple=True, type=click.Choice(EXPORTS),
                     help="outputs, repeatable (default: npy and mp4): npy/npz arrays, exr/png16 per frame, gray16 "
                          "16-bit video, ply point clouds, mp4 colour depth, sbs RGB|depth, zarr (the run store)"),
        click.option("--output", type=click.Choice(OUTPUT_KINDS), default="inverse", show_default=True,
                     help="values of npy/npz/exr/png16/gray16/ply: relative inverse depth (near = large, [-1, 1]) "
                          "or relative depth (near = small; not metric)"),
        click.option("--exr-dtype", type=click.Choice(EXR_DTYPES), default="float", show_default=True,
                     help="EXR pixel type of the Z channel"),
        click.option("--exr-compression", type=click.Choice(EXR_COMPRESSIONS), default="zip", show_default=True,
                     help="EXR compression"),
        click.option("--ply-every", type=click.IntRange(min=1), default=10, show_default=True,
                     help="write a point cloud every Nth frame"),
        click.option("--ply-stride", type=click.IntRange(min=1), default=1, show_default=True,
                     help="keep every Nth pixel in each direction of a point cloud"),
        click.option("--focal", type=float, help="focal length in px for point clouds (default: from --fov)"),
        click.option("--fov", type=float, default=60.0, show_default=True,
                     help="horizontal field of view in degrees for point clouds"),
        click.option("--name", "frame_name", metavar="TEMPLATE",
                     help="file names of per-frame outputs (exr, png16, ply), e.g. '{name}.{frame:04d}' "
                          "(default: {name}_ and the frame number padded like the input's file names, else 6 digits)"),
        click.option("--colormap", default="Spectral", show_default=True,
                     help="matplotlib colormap of the mp4/sbs videos"),
        click.option("--restore-res", is_flag=True, help="resize depth outputs back to the input resolution"),
        click.option("--fps", type=float, help="frame rate: of an image sequence input (default 24), and of the "
                                               "output videos (default: the input's)"),
        click.option("--overwrite", is_flag=True, help="discard an existing run store and start over"),
        click.option("--quiet", "-q", is_flag=True, help="no progress output (warnings and errors still print)"),
        click.option("--log-format", type=click.Choice(["auto", "bar", "plain", "json"]), default="auto",
                     show_default=True, help="progress: live bars on a terminal and plain lines otherwise (auto), "
                                             "or always bars, plain lines or JSON lines"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def cpu_dtype_note(preset: str, dtype: str | None, device: str) -> tuple[str | None, str | None]:
    """On CPU a preset's fp16 computes in fp32 (CPU fp16 is emulated, ~20x slower); an explicit
    --dtype wins. Returns (dtype to use, a note to print once the input is known to be good)."""
    from .engine.model import resolve_device

    if dtype is None and PRESETS[preset]["dtype"] == "fp16" and resolve_device(device).type == "cpu":
        return "fp32", "computing in fp32 on CPU (the preset's fp16 is slow there; --dtype fp16 forces it)"
    return dtype, None


def configs_from(kw: dict):
    """Split CLI keyword arguments into (RunConfig, ExecutionOptions, note), every value validated."""
    opts = ExecutionOptions(device=kw["device"], batch_size=kw["batch_size"], attention=kw["attention"],
                            save=tuple(kw["save"]) or ("npy", "mp4"), colormap=kw["colormap"],
                            restore_res=kw["restore_res"], fps=kw["fps"],
                            progress="quiet" if kw["quiet"] else kw["log_format"],
                            overwrite=kw["overwrite"], coalign_memory=kw["coalign_memory"] << 20,
                            scratch=kw["scratch"], scratch_budget=int(kw["scratch_budget"] * 2**30),
                            unit_seconds=kw["unit_seconds"],
                            keep_intermediates=kw["keep_intermediates"], unit_frames=kw["unit_frames"],
                            output=kw["output"], exr_dtype=kw["exr_dtype"], exr_compression=kw["exr_compression"],
                            ply_every=kw["ply_every"], ply_stride=kw["ply_stride"], focal=kw["focal"], fov=kw["fov"],
                            frame_name=kw["frame_name"],
                            threads=kw["threads"], workers=kw.get("video_workers"), scheduler=kw.get("video_scheduler"))
    validate_options(opts)
    dtype, note = cpu_dtype_note(kw["preset"], kw["dtype"], kw["device"])
    cfg = resolve_config(kw["preset"], res=kw["res"], dilations=kw["dilations"], snippet_lens=kw["snippet_len"],
                         cap_dilation=kw["cap_dilation"], dtype=dtype, refine_steps=kw["refine_steps"],
                         refine_start_dilation=kw["refine_start_dilation"], seed=kw["seed"],
                         coalign=kw["coalign"], reproduce=kw["reproduce"], shots=kw["shots"],
                         shot_threshold=kw["shot_threshold"], normalize=kw["normalize"], stream=kw["stream"],
                         start=kw["start"], frames=kw["frames"], stride=kw["stride"], target_fps=kw["target_fps"],
                         checkpoint=kw["checkpoint"])
    if cfg.shots not in SHOT_MODES and not Path(cfg.shots).is_file():
        raise ConfigError(f"--shots: no cut list file {cfg.shots} (or use auto or none)")
    return cfg, opts, note


def print_summary(result) -> None:
    from .engine.progress import summary_lines

    for line in summary_lines(result.stages, result.seconds, result.cumulative_seconds, result.num_frames,
                              runs=result.runs):
        click.echo(line)
    for fmt, path in result.outputs.items():
        click.echo(f"  {fmt:<6} {path}")


@click.group(cls=Cli)
def cli() -> None:
    """rdengine: streaming, resumable RollingDepth video depth."""


@cli.command()
@click.argument("video", type=click.Path(path_type=str))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--workers", "video_workers", type=int,
              help="spread this video's units over a local Dask cluster of N worker processes (one per GPU; "
                   "on CPU they share the cores)")
@click.option("--scheduler", "video_scheduler",
              help="spread this video's units over the workers of a running Dask scheduler, e.g. "
                   "tcp://10.0.0.5:8786 (OUT must be a folder every worker can reach)")
@process_options
def process(video: str, out_dir: Path, **kw) -> None:
    """Estimate depth for every frame of VIDEO into OUT (run store, npy, mp4, ...).

    VIDEO is a video file or an image sequence: a folder of frames, a pattern like
    shot_%04d.exr, or a glob like 'plates/*.png'. Depth is relative inverse depth
    (near = large), each shot normalized to [-1, 1], at the processing size (--res);
    rerunning the same command resumes an interrupted run.
    """
    from .engine.pipeline import process_video
    from .storage.inputs import open_input

    cfg, opts, note = configs_from(kw)
    with warnings.catch_warnings():  # the run says the input's warnings
        warnings.simplefilter("ignore", InputWarning)
        open_input(video, stream=cfg.stream, fps=opts.fps)  # a bad input is said before anything else
    if note:
        click.echo(f"note: {note}", err=True)
    print_summary(process_video(video, out_dir, cfg, opts))


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
    from .engine.config import ExecutionOptions
    from .engine.pipeline import process_video
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
    cfg = resolve_config("fast", res=128, dtype="fp32", checkpoint=str(checkpoint))
    opts = ExecutionOptions(device="cpu", save=("npy", "mp4", "sbs"), progress="quiet" if quiet else "auto",
                            overwrite=True)
    print_summary(process_video(str(clip), out_dir, cfg, opts))
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
@process_options
def batch(inputs: tuple[str, ...], out_root: str, workers: int | None, scheduler: str | None,
          cache_dir: str | None, split_frames: int, **kw) -> None:
    """Process every video of INPUT... (videos, folders, list files, globs; paths or URLs) on Dask, resumably."""
    from .engine.batch.run import format_table, run_batch

    cfg, opts, note = configs_from(kw)
    if note:
        click.echo(f"note: {note}", err=True)
    report = run_batch(inputs, out_root, cfg, opts, workers=workers, scheduler=scheduler, cache_dir=cache_dir,
                       split_frames=split_frames)
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
    `scaling`, `batch-size` and `coalign` measure memory, batching and the co-alignment solvers."""


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


@bench.command("film", add_help_option=False,
               context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_film(args) -> None:
    """Film-scale runs: time per frame, peak memory, store bytes and files per frame (options:
    `rdengine bench film --help`; other options go to `rdengine process`)."""
    from .benchmarks import film

    film.main(list(args))


@bench.command("cluster", add_help_option=False,
               context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_cluster(args) -> None:
    """One video on 1 vs N local workers: snippet-stage speed-up, and a projection to N GPUs
    (options: `rdengine bench cluster --help`)."""
    from .benchmarks import cluster

    cluster.main(list(args))


@bench.command("shots", add_help_option=False,
               context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_shots(args) -> None:
    """Cut detection: its time per frame and what it adds to ingest (`rdengine bench shots --help`)."""
    from .benchmarks import shots

    shots.main(list(args))


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

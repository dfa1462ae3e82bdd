"""Run configuration: the published presets and their resolution into one frozen config."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_CHECKPOINT = "prs-eth/rollingdepth-v1-0"
DTYPES = ("fp16", "bf16", "fp32")
EXPORTS = ("npy", "npz", "exr", "png16", "gray16", "ply", "mp4", "sbs", "zarr")
DEFAULT_EXPORTS = ("npy", "mp4")
NORMALIZE = ("shot", "global")
MAX_RES = 8192  # px of the longer side: the VAE's memory grows with its square
SHOT_MODES = ("auto", "none")  # or the path of a cut list
SCRATCH_MODES = ("auto", "depth", "latent")  # snippet scratch kinds (engine.plan)

PRESETS: dict[str, dict] = {
    "fast": dict(res=768, dilations=(1, 25), cap_dilation=True, dtype="fp16", refine_steps=0),
    "fast1024": dict(res=1024, dilations=(1, 25), cap_dilation=True, dtype="fp16", refine_steps=0),
    "full": dict(res=1024, dilations=(1, 10, 25), cap_dilation=True, dtype="fp16", refine_steps=10),
    "paper": dict(res=768, dilations=(1, 10, 25), cap_dilation=False, dtype="fp32", refine_steps=10),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines the bytes of a run's depth output.

    ``res`` is the processing resolution of the longer side in pixels (0 = native).
    ``snippet_lens`` holds one snippet length per dilation. ``reproduce``: the authors'
    frame geometry and arithmetic (see ``geometry``, ``exact_dtype``), with the reference
    co-alignment solver and no shot detection. ``shots``: ``auto`` (cuts detected while
    ingesting), ``none`` (one shot) or a cut-list file; ``normalize``: ``shot`` (each shot
    to [-1, 1]) or ``global`` (one range for the whole video).

    Which frames (``engine.clip``): from ``start`` (a video's frame index; an image sequence's
    own frame number), every ``stride``-th frame (or the stride that brings the input's rate
    nearest to ``target_fps``), at most ``frames`` of them. ``stream``: the video stream to
    read (None: the main one); the stream actually read is part of the run's manifest
    (``clip``), so naming the stream already in use is the same run.
    """

    preset: str = "fast"
    res: int = 768
    dilations: tuple[int, ...] = (1, 25)
    snippet_lens: tuple[int, ...] = (3, 3)
    cap_dilation: bool = True
    dtype: str = "fp16"
    refine_steps: int = 0
    refine_snippet_len: int = 3
    refine_start_dilation: int = 6
    seed: int = 2024
    coalign: str = "fast"
    reproduce: bool = False
    shots: str = "auto"
    shot_threshold: float | None = None
    normalize: str = "shot"
    stream: int | None = None
    start: int = 0
    frames: int | None = None
    stride: int = 1
    target_fps: float | None = None
    checkpoint: str = DEFAULT_CHECKPOINT

    @property
    def geometry(self) -> str:
        """How frames meet the VAE (``engine.latents.Geometry``): pixel-aligned padding, or the authors' crop."""
        return "authors" if self.reproduce else "pad"

    @property
    def exact_dtype(self) -> str | None:
        """The dtype of the min shift, merge, normalization and refinement averaging: the
        compute dtype with ``reproduce`` (as the published code), else None (float64 sums)."""
        return self.dtype if self.reproduce else None

    def to_dict(self) -> dict:
        """The settings that decide the depth values. The checkpoint and the stream are not named
        here: the checkpoint is identified by its weights (manifest ``checkpoint``) and the stream
        by the one read (manifest ``clip``), so another path to the same weights, or naming the
        stream already in use, resumes the run; replaced weights or another stream do not."""
        settings = dataclasses.asdict(self)
        del settings["checkpoint"], settings["stream"]
        return settings

    def digest(self) -> str:
        """Stable hash of the config: identical configs give identical run stores."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class ExecutionOptions:
    """Settings that change speed or outputs but never the depth values."""

    device: str = "auto"
    batch_size: int | None = None
    attention: str = "auto"
    save: tuple[str, ...] = DEFAULT_EXPORTS
    colormap: str = "Spectral"
    restore_res: bool = False
    fps: float | None = None
    progress: str = "auto"  # engine.progress.MODES: auto, bar, plain, json, notebook, quiet
    overwrite: bool = False
    coalign_memory: int = 1 << 28  # bytes: co-alignment samples and factor in memory, then streamed from disk
    scratch: str = "auto"
    scratch_budget: int = 8 << 30  # bytes of snippet scratch the shots in flight may hold (at most half the free disk)
    keep_intermediates: bool = False
    unit_frames: int | None = None
    unit_seconds: float = 60.0  # device work per snippet unit: what a kill may lose at most
    host_thread: bool = False  # host stages beside device work on CPU too (GPU and clusters always)
    output: str = "inverse"  # what value outputs hold: relative inverse depth, or relative depth
    exr_dtype: str = "float"
    exr_compression: str = "zip"
    ply_every: int = 10
    ply_stride: int = 1
    focal: float | None = None
    fov: float = 60.0
    frame_name: str | None = None  # per-frame file names, e.g. "{name}.{frame:04d}" (None: padded like the input)
    threads: int | None = None  # torch intra-op threads (per worker on a cluster); None: torch's default
    workers: int | None = None  # one video's units on a local Dask cluster of this many workers
    scheduler: str | None = None  # ... or on the workers of this running Dask scheduler


OUTPUT_KINDS = ("inverse", "depth")
EXR_DTYPES = ("half", "float")
EXR_COMPRESSIONS = ("zip", "piz", "none")
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def validate_options(opts: ExecutionOptions) -> None:
    """Raise ConfigError for options that cannot work together (each value alone is checked by
    its row in ``engine.options``)."""
    if opts.workers is not None and opts.scheduler:
        raise ConfigError("--workers starts a local cluster; it cannot be combined with --scheduler")


def resolve_config(preset: str = "fast", *, res: int | None = None, dilations: tuple[int, ...] | None = None,
                   snippet_lens: tuple[int, ...] | None = None, cap_dilation: bool | None = None,
                   dtype: str | None = None, refine_steps: int | None = None,
                   refine_start_dilation: int | None = None, coalign: str | None = None, reproduce: bool = False,
                   shots: str | None = None, **rest) -> RunConfig:
    """Start from a preset, apply explicit overrides, validate; ``rest`` passes through.

    ``coalign`` defaults to ``fast``, or ``reference`` with ``reproduce`` (which allows no other);
    ``shots`` to ``auto``, or ``none`` with ``reproduce`` (the published code knows no shots).
    """
    if reproduce and coalign not in (None, "reference"):
        raise ConfigError(f"--reproduce uses the published co-alignment solver; drop --coalign {coalign}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    base = dict(PRESETS[preset])
    for key, value in dict(res=res, dilations=dilations, cap_dilation=cap_dilation, dtype=dtype,
                           refine_steps=refine_steps).items():
        if value is not None:
            base[key] = value
    dil = tuple(int(d) for d in base["dilations"])
    lens = tuple(int(n) for n in (snippet_lens or (3,)))
    if len(lens) == 1:
        lens = lens * len(dil)
    cfg = RunConfig(preset=preset, res=int(base["res"]), dilations=dil, snippet_lens=lens,
                    cap_dilation=bool(base["cap_dilation"]), dtype=base["dtype"],
                    refine_steps=int(base["refine_steps"]),
                    refine_start_dilation=int(refine_start_dilation or 6),
                    coalign=coalign or ("reference" if reproduce else "fast"), reproduce=reproduce,
                    shots=shots or ("none" if reproduce else "auto"), **rest)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first rule of SPEC.md the dilations and snippet lengths break
    (each option's own range is checked by its row in ``engine.options``)."""
    if 1 not in cfg.dilations:
        raise ConfigError(f"dilations {list(cfg.dilations)} must include 1 so that every frame is covered")
    if any(d < 1 for d in cfg.dilations) or len(set(cfg.dilations)) != len(cfg.dilations):
        raise ConfigError(f"dilations {list(cfg.dilations)} must be distinct positive integers")
    if len(cfg.snippet_lens) != len(cfg.dilations):
        raise ConfigError(f"give one snippet length, or one per dilation ({len(cfg.dilations)}), "
                          f"not {len(cfg.snippet_lens)}")
    if any(not 2 <= n <= 4 for n in cfg.snippet_lens):
        raise ConfigError(f"snippet lengths {list(cfg.snippet_lens)} must be between 2 and 4")
    if cfg.target_fps is not None and cfg.stride != 1:
        raise ConfigError("--target-fps chooses the stride; give --stride or --target-fps, not both")

"""Every option of a run, defined once: name, type, default, help and rule.

``OPTIONS`` is the table. ``cli.py`` builds the click options of ``rdengine process`` and
``rdengine batch`` from it, and ``rdengine.RollingDepth`` its keywords (the same names, ``-``
as ``_``). ``RunOptions`` checks values from either door with the same rules and one-line
``ConfigError`` messages (the CLI passes strings, Python callers typed values; both are
accepted) and turns them into the engine's ``RunConfig`` (what is computed) and
``ExecutionOptions`` (how, and which outputs).

Adding an option is one row here, plus the ``RunConfig`` or ``ExecutionOptions`` field it
sets (``field``, default: its name), which the engine then reads. Rules that involve several
options stay with the configs (``config.validate``, ``config.validate_options``).

Importing this module is cheap (no torch, no zarr): options are checked before anything heavy.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError
from .config import (DEFAULT_CHECKPOINT, DEFAULT_EXPORTS, DEVICE_FORMS, DTYPES, EXPORTS, EXR_COMPRESSIONS, EXR_DTYPES,
                     MAX_RES, NORMALIZE, OUTPUT_KINDS, PRESETS, SCRATCH_MODES, SHOT_MODES, ExecutionOptions,
                     RunConfig, resolve_config, validate_options)
from .progress.sinks import MODES

LOG_FORMATS = tuple(m for m in MODES if m not in ("notebook", "quiet"))  # quiet: --quiet; notebook: auto in Jupyter


@dataclass(frozen=True)
class Option:
    """One option: ``--name-with-dashes`` on the command line, ``name`` as a Python keyword.

    ``kind``: ``int``, ``float``, ``text``, ``flag`` (False/True), ``switch`` (None/False/True:
    ``--x/--no-x``), ``ints`` (``1,10,25``), ``choice`` (one of ``choices``), ``choices`` (any
    number of them, repeatable on the command line) or ``progress`` (a bool or a progress
    mode). ``minimum``/``maximum`` bound numbers (``open_minimum``/``open_maximum``: the bound
    itself is excluded); ``check`` raises ``ConfigError`` for a rule beyond those. ``part``:
    ``run`` (a ``RunConfig`` field: part of the run's identity), ``exec`` (an
    ``ExecutionOptions`` field) or ``front`` (read by ``RunOptions`` itself); ``field`` the
    field's name when it differs, ``to_field`` converts the value (e.g. MiB to bytes).
    ``short``: a one-letter alias (``-q``); ``aliases``: other command-line names
    (``--max-frames``); ``cli``: offered by the command line (``progress``
    is Python only); ``batch``: also an option of ``rdengine batch``.
    """

    name: str
    kind: str
    help: str
    default: Any = None
    part: str = "exec"
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    open_minimum: bool = False
    open_maximum: bool = False
    check: Callable[[Any], None] | None = None
    field: str | None = None
    to_field: Callable[[Any], Any] | None = None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    cli: bool = True
    batch: bool = True

    @property
    def flag(self) -> str:
        """``--snippet-len`` for ``snippet_len``: the command line's name, and the one messages use
        (a Python-only option is named as its keyword)."""
        return "--" + self.name.replace("_", "-") if self.cli else self.name

    @property
    def type_name(self) -> str:
        """What a value is, in words (help texts, docstrings)."""
        if self.kind in ("choice", "choices"):
            several = " (several allowed)" if self.kind == "choices" else ""
            return "one of " + ", ".join(map(str, self.choices)) + several
        return {"int": "int", "float": "float", "text": "str", "flag": "bool", "switch": "bool or None",
                "ints": "int or ints", "progress": "bool or a mode (" + ", ".join(MODES) + ")"
                }[self.kind]

    def parse(self, value: Any) -> Any:
        """``value`` (a Python value, or the command line's string) as this option's type, checked;
        ``None`` means the default. Raises ``ConfigError`` naming the option."""
        if value is None or (self.kind == "choices" and not value and not isinstance(value, str)):
            return self.default
        parsed = PARSERS[self.kind](self, value)
        if self.kind in ("int", "float"):
            self._check_bounds(parsed)
        if self.kind == "choice" and parsed not in self.choices:
            raise ConfigError(f"{self.flag} must be one of {', '.join(map(str, self.choices))}, not {value!r}")
        if self.kind == "choices":
            bad = [v for v in parsed if v not in self.choices]
            if bad:
                raise ConfigError(f"{self.flag} must be one of {', '.join(self.choices)}, not {bad[0]!r}")
        if self.check is not None and parsed != self.default:  # a default is good (and may be costly to check)
            self.check(parsed)
        return parsed

    def _check_bounds(self, value: float) -> None:
        low, high = self.minimum, self.maximum
        below = low is not None and (value <= low if self.open_minimum else value < low)
        above = high is not None and (value >= high if self.open_maximum else value > high)
        if not (below or above):
            return
        if high is None:
            rule = f"{'>' if self.open_minimum else '>='} {low:g}"
        elif low is None:
            rule = f"{'<' if self.open_maximum else '<='} {high:g}"
        else:
            rule = f"in {'(' if self.open_minimum else '['}{low:g}, {high:g}{')' if self.open_maximum else ']'}"
        raise ConfigError(f"{self.flag} must be {rule}, not {value:g}")


def _int(option: Option, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise ConfigError(f"{option.flag} must be an integer, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{option.flag} must be an integer, not {value!r}") from None


def _float(option: Option, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ConfigError(f"{option.flag} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{option.flag} must be a number, not {value!r}") from None
    if math.isnan(number):
        raise ConfigError(f"{option.flag} must be a number, not {value!r}")
    return number


def _text(option: Option, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{option.flag} must be a string, not {value!r}")
    return os.fspath(value)


def _bool(option: Option, value: Any) -> bool:
    if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
        raise ConfigError(f"{option.flag} must be True or False, not {value!r}")
    return bool(value)


def _ints(option: Option, value: Any) -> tuple[int, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else \
        [value] if isinstance(value, numbers.Integral) else value
    try:
        parsed = tuple(_int(option, v) for v in items)
    except (ConfigError, TypeError):
        raise ConfigError(f"{option.flag} expects integers like '1 10 25', got {value!r}") from None
    if not parsed:
        raise ConfigError(f"{option.flag} expects integers like '1 10 25', got {value!r}")
    return parsed


def _choices(option: Option, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    return tuple(_text(option, v) for v in items)


def _progress(option: Option, value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if value not in MODES:
        raise ConfigError(f"{option.flag} must be True, False or one of {', '.join(MODES)}, not {value!r}")
    return value


PARSERS: dict[str, Callable[[Option, Any], Any]] = {
    "int": _int, "float": _float, "text": _text, "flag": _bool, "switch": _bool, "ints": _ints, "choice": _text,
    "choices": _choices, "progress": _progress}


# -- rules beyond a type and bounds ------------------------------------------------------------

def check_seed(seed: int) -> None:
    if not 0 <= seed < 2 ** 63:
        raise ConfigError(f"--seed must be in [0, 2^63), not {seed}")


def check_shots(shots: str) -> None:
    if shots not in SHOT_MODES and not Path(shots).is_file():
        raise ConfigError(f"--shots: no cut list file {shots} (or use auto or none)")


def check_finite(option_flag: str) -> Callable[[float], None]:
    def check(value: float) -> None:
        if not math.isfinite(value):
            raise ConfigError(f"{option_flag} must be a finite number, not {value}")
    return check


def check_frame_name(template: str) -> None:
    from ..storage.exporters import check_frame_template

    try:
        check_frame_template(template)
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from None


def check_device(device: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"--device '{device}' is not supported: use {DEVICE_FORMS}")


def check_colormap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        raise ConfigError(f"--colormap '{name}' is not a matplotlib colormap (e.g. Spectral, turbo, viridis, magma, "
                          "gray)")


def check_scheduler_address(address: str) -> None:
    """A scheduler address must name a transport Dask knows (tcp://, tls://, inproc://, ws://, ...)."""
    scheme, sep, rest = address.partition("://")
    if not sep or not rest:
        raise ConfigError(f"--scheduler {address!r}: expected an address like tcp://10.0.0.5:8786")
    from distributed.comm import registry  # only when a scheduler is named: Dask is needed then anyway

    try:
        registry.get_backend(scheme)
    except ValueError:
        raise ConfigError(f"--scheduler {address!r}: unknown protocol {scheme}:// (use tcp://, tls:// or ws://)") \
            from None


PRESET_HELP = "; ".join(
    f"{name}: {p['res']} px, dilations {' '.join(map(str, p['dilations']))}, {p['dtype']}"
    f"{'' if p['cap_dilation'] else ', no dilation cap'}, {p['refine_steps'] or 'no'} refinement steps"
    for name, p in PRESETS.items())

OPTIONS: tuple[Option, ...] = (
    # what is computed (part of the run's identity: a change starts a new run)
    Option("preset", "choice", f"published settings ({PRESET_HELP}); every value can be overridden below",
           "fast", "run", tuple(PRESETS)),
    Option("res", "int", "processing resolution: the longer side in px (default: the preset's, 768 or 1024; "
                         "0 = native size). Depth comes out at this size, e.g. 1080p at --res 768 gives 768x432, "
                         "unless --restore-res", part="run", minimum=0, maximum=MAX_RES),
    Option("dilations", "ints", "frame spacings of the snippets, e.g. 1 10 25 (must include 1; default: the "
                                "preset's)", part="run"),
    Option("snippet_len", "ints", "frames per snippet, one value or one per dilation (2..4; default 3)",
           part="run", field="snippet_lens"),
    Option("refine_steps", "int", "diffusion refinement steps after co-alignment (0 = none; default: the "
                                  "preset's, 0 or 10)", part="run", minimum=0),
    Option("refine_start_dilation", "int", "frame spacing of the first refinement step, coarse to fine down to 1 "
                                           "(default 6)", part="run", minimum=1),
    Option("cap_dilation", "switch", "cap dilations at int(frames / snippet length) - 1 for short videos "
                                     "(default: the preset's; off for paper)", part="run"),
    Option("dtype", "choice", "compute precision (default: the preset's; on CPU fp16 presets compute in fp32)",
           part="run", choices=DTYPES),
    Option("coalign", "choice", "co-alignment solver: fast (least squares + L-BFGS; default) or reference (the "
                                "published 2000 Adam steps; default with --reproduce)", part="run",
           choices=("fast", "reference")),
    Option("shots", "text", "cuts: detected while ingesting (auto; default), none (one shot), or a cut list FILE "
                            "(frame numbers, CSV with timecodes or frames, or a CMX3600 EDL); snippets never cross "
                            "a cut and each shot is aligned on its own", part="run", check=check_shots,
           metavar="auto|none|FILE"),
    Option("shot_threshold", "float", "cut detection threshold: how many times a frame's change exceeds its "
                                      "neighbours' (PySceneDetect adaptive detector; default 1.5, lower finds more)",
           part="run", minimum=0, open_minimum=True, check=check_finite("--shot-threshold")),
    Option("normalize", "choice", "map each shot's depth to [-1, 1], or use one range over the whole video",
           "shot", "run", NORMALIZE),
    Option("reproduce", "flag", "the authors' exact numbers: their frame size rule (depth 8*floor(H/8) x "
                                "8*floor(W/8), the top-left of the frame), the reference solver, their fp16/fp32 "
                                "arithmetic, no shots", False, "run"),
    Option("seed", "int", "seed of the initial noise", 2024, "run", check=check_seed),
    Option("start", "int", "first frame of the clip: a video's frame index (from 0), an image sequence's own frame "
                           "number (e.g. 1001); outputs keep the input's frame numbers", 0, "run", minimum=0),
    Option("frames", "int", "process at most N frames (after --stride; default: to the end)", part="run", minimum=1,
           aliases=("--max-frames",)),
    Option("stride", "int", "process every Kth frame from --start; frames keep the input's numbers (0, 2, 4, ...) "
                            "and outputs play at the input's rate / K", 1, "run", minimum=1),
    Option("target_fps", "float", "process the input at about this rate: the stride nearest input fps / F "
                                  "(instead of --stride)", part="run", minimum=0, open_minimum=True,
           check=check_finite("--target-fps")),
    Option("stream", "int", "the video stream to read (index as ffprobe numbers them; default: the main video)",
           part="run", minimum=0),
    Option("checkpoint", "text", "hub id or local folder in the same layout (offline: a local folder)",
           DEFAULT_CHECKPOINT, "run"),
    # how it is computed (speed, memory, disk; the depth stays the same)
    Option("device", "text", f"compute device: {DEVICE_FORMS}", "auto", check=check_device),
    Option("attention", "choice", "cross-frame attention kernel: fused Triton (CUDA), torch SDPA, or auto", "auto",
           choices=("auto", "triton", "sdpa")),
    Option("batch_size", "int", "snippets per UNet call (default: from free GPU memory; 4 on CPU)", minimum=1),
    Option("threads", "int", "torch CPU threads (per worker on a cluster; default: torch's, on a local cluster the "
                             "cores split between workers). CPU results differ in the last bits between thread "
                             "counts: compare runs at the same count", minimum=1),
    Option("coalign_memory", "int", "co-alignment memory budget in MiB; past it the solver streams from disk", 256,
           minimum=16, to_field=lambda mib: mib << 20),
    Option("scratch", "choice", "snippet scratch, per shot: 'depth' keeps full-resolution snippet depth (compressed, "
                                "lossless) until the shot's merge (the method's device work), 'latent' keeps "
                                "latents and decodes them again at merge time (a fraction of the disk, one more VAE "
                                "decode per snippet frame); auto: depth for every shot that fits --scratch-budget, "
                                "latent for a longer take", "auto", choices=SCRATCH_MODES),
    Option("scratch_budget", "float", "GiB of snippet scratch the shots in flight may hold (at most half the free "
                                      "disk)", 8.0, minimum=0, check=check_finite("--scratch-budget"),
           to_field=lambda gib: int(gib * 2 ** 30)),
    Option("unit_frames", "int", "frames per shard of the per-frame arrays (default: 8..128 by frame size): "
                                 "smaller shards spread better over a cluster, at more files and records", minimum=1),
    Option("unit_seconds", "float", "device work per snippet unit, measured as the run goes: a kill loses at most "
                                    "about this much", 60.0, minimum=0.01, check=check_finite("--unit-seconds")),
    Option("keep_intermediates", "flag", "keep every intermediate array in the run store (default: released once "
                                         "used)", False),
    Option("workers", "int", "spread this video's units over a local Dask cluster of N worker processes (one per "
                             "GPU; on CPU they share the cores)", minimum=1, batch=False),
    Option("scheduler", "text", "spread this video's units over the workers of a running Dask scheduler, e.g. "
                                "tcp://10.0.0.5:8786 (OUT must be a folder every worker can reach)",
           check=check_scheduler_address, batch=False),
    # outputs
    Option("save", "choices", "outputs, repeatable (default: npy and mp4): npy/npz arrays, exr/png16 per frame, "
                              "gray16 16-bit video, ply point clouds, mp4 colour depth, sbs RGB|depth, zarr (the run "
                              "store)", (), choices=EXPORTS, to_field=lambda formats: formats or DEFAULT_EXPORTS),
    Option("output", "choice", "values of npy/npz/exr/png16/gray16/ply: relative inverse depth (near = large, "
                               "[-1, 1]) or relative depth (near = small; not metric)", "inverse",
           choices=OUTPUT_KINDS),
    Option("exr_dtype", "choice", "EXR pixel type of the Z channel", "float", choices=EXR_DTYPES),
    Option("exr_compression", "choice", "EXR compression", "zip", choices=EXR_COMPRESSIONS),
    Option("ply_every", "int", "write a point cloud every Nth frame", 10, minimum=1),
    Option("ply_stride", "int", "keep every Nth pixel in each direction of a point cloud", 1, minimum=1),
    Option("focal", "float", "focal length in px for point clouds (default: from --fov)", minimum=0,
           open_minimum=True, check=check_finite("--focal")),
    Option("fov", "float", "horizontal field of view in degrees for point clouds", 60.0, minimum=0, maximum=180,
           open_minimum=True, open_maximum=True),
    Option("name", "text", "file names of per-frame outputs (exr, png16, ply), e.g. '{name}.{frame:04d}' (default: "
                           "{name}_ and the frame number padded like the input's file names, else 6 digits)",
           field="frame_name", check=check_frame_name, metavar="TEMPLATE"),
    Option("colormap", "text", "matplotlib colormap of the mp4/sbs videos", "Spectral", check=check_colormap),
    Option("restore_res", "flag", "resize depth outputs back to the input resolution", False),
    Option("fps", "float", "frame rate: of an image sequence or in-memory input (default 24), and of the output "
                           "videos (default: the input's)", minimum=0, maximum=1000, open_minimum=True),
    Option("overwrite", "flag", "discard an existing run store and start over", False),
    # progress output
    Option("quiet", "flag", "no progress output (warnings and errors still print)", False, "front", short="-q"),
    Option("log_format", "choice", "progress: live bars on a terminal and plain lines otherwise (auto), or always "
                                   "bars, plain lines or JSON lines", "auto", "front", LOG_FORMATS),
    Option("progress", "progress", "progress output: True (live bars; tqdm.auto widgets in a notebook), False "
                                   "(warnings only), or a mode", True, "front", cli=False),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def command_options(batch: bool = False) -> list[Option]:
    """The table's options of ``rdengine process`` (or ``batch``), in table order."""
    return [o for o in OPTIONS if o.cli and (o.batch or not batch)]


def option(name: str) -> Option:
    """The row of keyword ``name``; ``ConfigError`` (with a suggestion) for an unknown one."""
    if name in BY_NAME:
        return BY_NAME[name]
    close = difflib.get_close_matches(name, BY_NAME, n=1)
    raise ConfigError(f"unknown option {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


class RunOptions(Mapping[str, Any]):
    """Checked values of every option (those not given at their default), read like a dict.

    ``RunOptions(values)`` checks each given value (``Option.parse``), then the rules that
    involve several options by building the configs, so anything wrong is said before any
    work. ``replace(**values)`` gives new checked options; ``given`` holds the names passed.
    """

    def __init__(self, values: Mapping[str, Any] | None = None):
        values = dict(values or {})
        self.given = frozenset(name for name, value in values.items() if value is not None and
                               not (option(name).kind == "choices" and not value and not isinstance(value, str)))
        self._values = {o.name: o.parse(values.get(o.name)) for o in OPTIONS}
        self.run_config()
        validate_options(self.execution())

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **values: Any) -> "RunOptions":
        """These options with ``values`` (keyword -> value; ``None`` restores a default) applied."""
        merged = {name: self._values[name] for name in self.given}
        merged.update(values)
        return RunOptions(merged)

    def compute_dtype(self, device_type: str) -> tuple[str | None, str | None]:
        """The dtype to compute in on a device of ``device_type`` (``cpu``, ``cuda``) and a note to
        print: on CPU a preset's fp16 computes in fp32 (CPU fp16 is emulated, ~20x slower); an
        explicit ``dtype`` wins. ``(None, None)``: the preset's dtype as is."""
        if self["dtype"] is None and PRESETS[self["preset"]]["dtype"] == "fp16" and device_type == "cpu":
            return "fp32", "computing in fp32 on CPU (the preset's fp16 is slow there; --dtype fp16 forces it)"
        return self["dtype"], None

    def run_config(self, dtype: str | None = None) -> RunConfig:
        """What is computed: the preset with every ``run`` option applied (``dtype`` wins when given)."""
        fields = {o.field or o.name: self._values[o.name] for o in OPTIONS if o.part == "run"}
        if dtype is not None:
            fields["dtype"] = dtype
        return resolve_config(**fields)

    def execution(self) -> ExecutionOptions:
        """How the run computes and what it writes (``ExecutionOptions``), progress mode included."""
        fields = {o.field or o.name: (o.to_field or (lambda v: v))(self._values[o.name])
                  for o in OPTIONS if o.part == "exec"}
        return ExecutionOptions(progress=self.progress_mode, **fields)

    @property
    def progress_mode(self) -> str:
        """``quiet`` with ``--quiet`` or ``progress=False``; a mode given as ``progress``; else ``--log-format``."""
        progress = self["progress"]
        if self["quiet"] or progress is False:
            return "quiet"
        return progress if isinstance(progress, str) else self["log_format"]


def describe_options(options: Sequence[Option] = OPTIONS, indent: str = "    ", width: int = 100) -> str:
    """One docstring paragraph per option: ``name`` (type, default) and its help."""
    import textwrap

    paragraphs = []
    for o in options:
        default = "" if o.default in (None, ()) else f", default {o.default!r}"
        paragraphs.append(textwrap.fill(f"{o.name} ({o.type_name}{default}): {o.help}.", width,
                                        initial_indent=indent, subsequent_indent=indent + "    "))
    return "\n".join(paragraphs)


def signature_parameters(options: Sequence[Option] = OPTIONS) -> list:
    """``inspect.Parameter``s (keyword-only, typed, with defaults) of ``options``: the API's keywords."""
    import inspect

    types = {"int": "int", "float": "float", "text": "str", "flag": "bool", "switch": "bool", "ints": "Sequence[int]",
             "choice": "str", "choices": "Sequence[str]", "progress": "bool | str"}
    return [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                              annotation=types[o.kind] + (" | None" if o.default is None else ""))
            for o in options]


__all__ = ["OPTIONS", "Option", "RunOptions", "command_options", "option", "describe_options",
           "signature_parameters", "check_scheduler_address"]

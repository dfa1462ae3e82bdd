"""What a run calls its outputs, and the check that they never touch its input.

``output_name``: the stem of every output file; ``frame_name``: the per-frame file template
(``--name``, else the input's own padding: ``shot_0101.exr`` gives ``{name}_{frame:04d}``);
``check_run_outputs``: before any work, refuse outputs that would overwrite, remove or join
the input, or replace a file no run in the output folder wrote (``storage.exporters.ledger``).
"""

from __future__ import annotations

from pathlib import Path

from ..storage.exporters import DEFAULT_FRAME_DIGITS, frame_template
from ..storage.exporters.ledger import OutputConflict, check_outputs, plan_outputs
from ..storage.inputs import FrameSource, SourceInfo
from .config import ExecutionOptions, RunConfig
from .errors import EngineError


def output_name(path: str, source: FrameSource) -> str:
    """The stem of output files: a video's name, or an image sequence's folder or pattern stem."""
    if source.info.kind == "video":
        return Path(path).stem
    p = Path(path)
    if p.is_dir():
        return p.resolve().name
    stem = p.name.split("%")[0].split("#")[0].split("*")[0].rstrip("._-")
    return stem or p.parent.resolve().name


def frame_name(opts: ExecutionOptions, info: SourceInfo) -> str:
    """The per-frame file name template: ``--name``, else ``{name}_`` and the frame number padded
    like the input's file names (``DEFAULT_FRAME_DIGITS`` for inputs that write none)."""
    return opts.frame_name or frame_template(info.number_digits or DEFAULT_FRAME_DIGITS)


def check_run_outputs(source: FrameSource, out_dir: Path, name: str, cfg: RunConfig, opts: ExecutionOptions) -> None:
    """EngineError (naming both paths) when an output of this run would overwrite, remove or join
    an input file, or replace a file that no run in ``out_dir`` wrote; writes nothing."""
    plan = plan_outputs(out_dir, name, opts.save, cfg.shots != "none", frame_name(opts, source.info))
    try:
        check_outputs(source, plan)
    except OutputConflict as exc:
        raise EngineError(str(exc)) from None

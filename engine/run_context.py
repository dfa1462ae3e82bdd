"""``RunContext``: one run in progress, handed to every stage.

It holds what every stage may need and nothing a stage invents for another: the store and
the facts recorded in it (``RunFacts``), the input, the settings, where units run
(``executor``), progress, and, once ingest is done, the plan and the snippet stream.
Stages hand facts to later stages only through ``record`` (the store), so a resumed run
sees them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..storage import layout
from ..storage.inputs import FrameSource
from ..storage.run_store import RunStore
from .config import ExecutionOptions, RunConfig
from .execution import Executor
from .facts import RunFacts
from .progress import Progress, StageTimer

if TYPE_CHECKING:  # these import torch; the context only carries them
    from .plan import RunPlan
    from .stages.snippets import DeviceTimer, SnippetStream


@dataclass
class RunContext:
    """One run: ``store`` (its ``facts``), ``source`` (the input), ``cfg`` and ``opts``, ``executor``,
    ``progress`` and its stage ``timers``, the output folder ``out_dir`` and stem ``name``.

    ``plan`` and ``stream`` are set once ingest is done; ``exports`` holds the export stage's
    state across shots and ``outputs`` what it wrote; ``on_shot(shot)`` is called when a shot's
    depth is final.
    """

    store: RunStore
    source: FrameSource
    cfg: RunConfig
    opts: ExecutionOptions
    executor: Executor
    progress: Progress
    out_dir: Path
    name: str
    facts: RunFacts
    device_timer: "DeviceTimer | None" = None
    on_shot: Callable | None = None
    plan: "RunPlan | None" = None
    stream: "SnippetStream | None" = None
    timers: dict[str, StageTimer] = field(default_factory=dict)
    exports: Any = None
    outputs: dict[str, Path] = field(default_factory=dict)

    def record(self, **changes) -> None:
        """Change facts and write them to the store at once."""
        self.facts = self.facts.record(self.store, **changes)

    def forget(self, *names: str) -> None:
        self.facts = self.facts.forget(self.store, *names)

    def release(self, *names: str) -> None:
        """Free intermediate arrays whose readers are done (kept with ``--keep-intermediates``)."""
        if not self.opts.keep_intermediates:
            self.store.release(*names)

    def release_scratch_unit(self, first_batch: int) -> None:
        """Delete a snippet unit's scratch arrays (every shot with snippets in it is merged)."""
        if not self.opts.keep_intermediates:
            self.store.delete(f"{layout.SNIPPET_SCRATCH}/{layout.batch_unit(first_batch)}")

    def release_rows(self, name: str, first: int, stop: int) -> None:
        if not self.opts.keep_intermediates:
            self.store.release_rows(name, first, stop)

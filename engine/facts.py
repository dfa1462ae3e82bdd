"""What a run store records about its run, typed: the one home of the facts stages hand on.

The store keeps them as its ``info`` attributes (JSON); ``RunFacts.read`` gives them back as
fields, and ``RunFacts.record`` changes fields and writes them at once, so a resumed run (or
``inspect``) sees exactly what the last one decided. Anything a later stage needs from an
earlier one passes through here, never through an untyped dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..storage.run_store import RunStore


@dataclass(frozen=True)
class PlanChoices:
    """Choices fixed once per store before the first snippet is computed, so a resumed run cuts
    its work exactly as before: snippets per UNet call, the snippet scratch of every shot
    (``depth`` or ``latent``) and the scratch budget (bytes) they were chosen for."""

    batch_size: int
    scratch: tuple[str, ...]
    scratch_budget: int

    @classmethod
    def from_json(cls, value: dict) -> "PlanChoices":
        return cls(int(value["batch_size"]), tuple(value["scratch"]), int(value["scratch_budget"]))


@dataclass(frozen=True)
class RunFacts:
    """The run's recorded facts (``None``: not decided yet).

    ``frame_unit``: frames per shard of per-frame arrays (fixed before ingest writes);
    ``frames_announced``: the clip's length as the input announces it (a hint, for progress);
    ``num_frames``, ``geometry`` (``pad``/``authors``), ``frame_size``/``depth_size``/
    ``latent_size`` ``(rows, columns)``: what ingest found; ``cuts``: frame numbers (0-based
    in the clip) where shots start; ``decoding``: what the decoder could not read;
    ``plan``: see ``PlanChoices``; ``notes``: planning notes shown to the user; ``seconds`` and
    ``runs``: time spent on the store over all runs; ``input_stat`` and ``checkpoint_path``:
    where the last run read its input and weights.
    """

    frame_unit: int | None = None
    frames_announced: int | None = None
    num_frames: int | None = None
    geometry: str | None = None
    frame_size: tuple[int, int] | None = None
    depth_size: tuple[int, int] | None = None
    latent_size: tuple[int, int] | None = None
    cuts: tuple[int, ...] | None = None
    decoding: dict | None = None
    plan: PlanChoices | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    runs: int = 0
    input_stat: dict | None = None
    checkpoint_path: str | None = None
    extra: dict = field(default_factory=dict, compare=False)  # keys this version does not know (kept as they are)

    @classmethod
    def from_info(cls, info: dict) -> "RunFacts":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values, extra = {}, {}
        for key, value in info.items():
            try:
                values[key] = _typed(key, value) if key in known else None
            except (KeyError, TypeError, ValueError):  # damaged: the fact counts as undecided
                values[key] = None
            if key not in known or (values[key] is None and value is not None):
                extra[key] = value
        return cls(**{k: v for k, v in values.items() if k in known and (v is not None or k not in extra)}, extra=extra)

    @classmethod
    def read(cls, store: RunStore) -> "RunFacts":
        return cls.from_info(store.info)

    def record(self, store: RunStore, **changes) -> "RunFacts":
        """These facts with ``changes``, written to ``store``; returns the new facts."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"not a run fact: {', '.join(sorted(unknown))}")
        store.update_info(**{k: _jsonable(v) for k, v in changes.items()})
        return dataclasses.replace(self, **{k: _typed(k, v) if v is not None else None for k, v in changes.items()})

    def forget(self, store: RunStore, *names: str) -> "RunFacts":
        """These facts with ``names`` back to undecided (their defaults), in ``store`` too."""
        store.drop_info(*names)
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in names}
        return dataclasses.replace(self, **defaults)


def _typed(name: str, value):
    if value is None:
        return None
    if name == "plan":
        return value if isinstance(value, PlanChoices) else PlanChoices.from_json(value)
    if name in ("frame_size", "depth_size", "latent_size", "cuts", "notes"):
        return tuple(value)
    return value


def _jsonable(value):
    if isinstance(value, PlanChoices):
        return {"batch_size": value.batch_size, "scratch": list(value.scratch), "scratch_budget": value.scratch_budget}
    if isinstance(value, tuple):
        return list(value)
    return value
